"""First use: the README's install-and-test command works on a fresh machine, and CI runs exactly that command.

A fresh virtualenv cannot be built offline here, so this checks what makes it work: CI runs the README's command
verbatim, and every third-party module the tests import is installed by ``pip install -e ".[dev]"`` (a declared
dependency, a ``dev`` extra, or something one of them pulls in).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]
TEST_COMMAND = 'pip install -c constraints.txt -e ".[dev]" && pytest -q'


def readme_section(title: str) -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8").split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_test_command_installs_the_dev_extra_and_ci_runs_it_verbatim():
    blocks = re.findall(r"```bash\n(.*?)```", readme_section("Tests"), flags=re.DOTALL)
    assert blocks and blocks[0].strip() == TEST_COMMAND
    assert TEST_COMMAND in readme_section("Install")  # said where a new user looks first
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert TEST_COMMAND in ci and ci.index(TEST_COMMAND) > ci.index("pip install -q torch==2.13.0")


def installed_by_dev_extra() -> set[str]:
    """Distributions that ``pip install -e ".[dev]"`` brings: our requirements and, recursively, theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    found: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        extras = requirement.extras or {""}
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(child)
    return found


def imported_modules(folder: Path) -> set[str]:
    modules: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"pipeline", "tests", "__future__"}


def other_extras() -> set[str]:
    """Packages of the optional extras besides dev (qlora: bitsandbytes): tests that need them skip without them."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    return {canonicalize_name(Requirement(r).name) for name, reqs in extras.items() if name != "dev" for r in reqs}


def test_every_module_the_tests_import_comes_with_the_dev_extra():
    provided = importlib.metadata.packages_distributions()
    installed = installed_by_dev_extra()
    missing = {
        module: provided.get(module, ["(not installed)"])
        for module in imported_modules(ROOT / "tests")
        if not any(canonicalize_name(dist) in installed for dist in provided.get(module, []))
        and canonicalize_name(module) not in other_extras()
    }
    assert not missing, f"tests import modules that pip install -e '.[dev]' does not bring: {missing}"
