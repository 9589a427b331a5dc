"""The package layout the README describes: stages in folders, data flowing one way, light inference imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
STAGES = ["data", "model", "train", "evaluation", "report", "export", "serve"]
"""In the order data flows: a stage may import earlier stages, never later ones."""
TRAINING_ONLY = ["transformers.trainer", "datasets", "evaluate", "sklearn", "matplotlib"]


def package_imports(stage: str) -> set[str]:
    """Every ``pipeline.X`` that a stage's modules import (module level or inside functions), by ``X``."""
    found = set()
    for path in (PACKAGE / stage).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline."):
                found.add(node.module.split(".")[1])
    return found


def stage_imports(stage: str) -> set[str]:
    """The other stages that a stage's modules import."""
    return package_imports(stage) & set(STAGES) - {stage}


@pytest.mark.parametrize("stage", STAGES)
def test_stages_only_import_earlier_stages(stage: str) -> None:
    later = set(STAGES[STAGES.index(stage) + 1 :])
    assert not stage_imports(stage) & later, f"{stage} imports a later stage: {stage_imports(stage) & later}"


def test_only_export_opens_the_metadata_file() -> None:
    users = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "spam_tune.json" in path.read_text(encoding="utf-8")
        and "export" not in path.parts
        and "report" not in path.parts  # mentions it in prose only
    ]
    assert users == [], users


def test_prediction_imports_no_training_library() -> None:
    """A server or a batch job loads only what inference needs (fresh interpreter: nothing preloaded)."""
    code = (
        "import sys, pipeline.serve.classifier, pipeline.export.folder, pipeline.model.adapters; "
        f"print([m for m in {TRAINING_ONLY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_package_top_holds_only_what_every_stage_shares_or_what_starts_a_command() -> None:
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    # The workflows of the commands sit together, and no stage reaches back into them.
    assert {"train", "evaluate", "search"} <= {path.stem for path in (PACKAGE / "commands").glob("*.py")}
    assert not any("commands" in package_imports(stage) for stage in STAGES)
