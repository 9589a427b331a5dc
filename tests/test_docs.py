"""The README and docs/: generated tables up to date, every relative link and anchor resolves, user-facing words."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
USER_TEXT = [*PAGES, ROOT / "bench" / "README.md", *sorted((ROOT / "configs").rglob("*.yaml"))]


def load_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_up_to_date():
    assert load_tables().stale() == [], "run `python bench/tables.py` and commit the result"


def test_every_table_marker_has_a_generator():
    tables = load_tables()
    names = {m.group(2) for page in PAGES for m in tables.MARKER.finditer(page.read_text(encoding="utf-8"))}
    assert names == set(tables.TABLES), f"markers without a generator or generators without a marker: {names}"


def test_a_new_quality_file_with_the_same_schema_becomes_a_row(tmp_path, monkeypatch):
    tables = load_tables()
    results = tmp_path / "results"
    shutil.copytree(tables.RESULTS, results)
    data = json.loads((results / "quality-book-lora-cpu.json").read_text(encoding="utf-8"))
    data["model"] = {"source": "google/gemma-3-270m"}
    data["command"] = "python bench/quality.py --split book --mode lora --model-dir /tmp/gemma --out-dir /tmp/x"
    (results / "quality-book-lora-gemma3-270m-cpu.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(tables, "RESULTS", results)
    text = tables.TABLES["results-book"]()
    assert "google/gemma-3-270m" in text
    assert "quality-book-lora-gemma3-270m-cpu.json" in text
    assert "--model-dir MODEL_DIR" in text and "/tmp/" not in text


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in without_code(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for target in LINK.findall(without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, broken


def test_slug_follows_github():
    assert slug("The book's split and the honest split") == "the-books-split-and-the-honest-split"
    assert slug("`spam-tune serve`: HTTP API") == "spam-tune-serve-http-api"
    assert slug("Export --onnx") == "export---onnx"
    assert slug("last_blocks **mode**") == "last_blocks-mode"


def test_readme_is_a_landing_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("path", USER_TEXT, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_facing_text_speaks_to_users(path: Path):
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    words = re.findall(r"\bissues? #?\d+|\btargets? (?:not )?met\b|\bthis session\b|\blent GPU\b", text, re.IGNORECASE)
    assert not words, words
