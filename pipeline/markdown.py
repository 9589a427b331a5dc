"""Markdown pieces shared by the report (``report.md``) and the model card (``README.md``).

One home below both stages, so neither borrows from the other: escaping table cells, tables, percentages,
durations, and the note on what the metric columns mean.
"""

from __future__ import annotations

from typing import Any

METRIC_COLUMNS = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("f1_macro", "F1 macro"),
    ("roc_auc", "ROC-AUC"),
)
MAX_TEXT = 100
_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]"}
_ESCAPES |= {"<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def cell(text: Any, limit: int | None = None) -> str:
    """One table cell: one line, optionally truncated, with Markdown/HTML specials (and ``|``) escaped."""
    value = " ".join(str(text).split())
    if limit is not None and len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def percent(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.2f}"


def table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def join_blocks(blocks: list[str]) -> str:
    """Markdown blocks separated by exactly one blank line."""
    return "\n\n".join(b.strip("\n") for b in blocks if b.strip()) + "\n"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def metrics_note(names: dict[int, str], positive_label: int) -> str:
    """What precision/recall/F1 mean in the tables (they differ between binary and multi-class tasks)."""
    if len(names) != 2:
        return "With more than two classes, precision, recall and F1 are macro averages; ROC-AUC is binary-only."
    return (
        f"Precision, recall and F1 are those of the positive class `{names.get(positive_label)}`; F1 macro averages "
        "over the classes; ROC-AUC ranks rows by p(positive) (the baseline by its SVM margin)."
    )
