"""A generated multi-label toy set (no download): each label has its own words, a text carries 0-3 labels."""

from __future__ import annotations

import json
import random
from pathlib import Path

LABELS = ("toxic", "insult", "threat")
WORDS = {
    "toxic": ["garbage", "trash", "filthy", "disgusting"],
    "insult": ["idiot", "moron", "clown", "loser"],
    "threat": ["hurt", "destroy", "punish", "attack"],
}
FILLER = ["the", "meeting", "is", "at", "noon", "see", "you", "soon", "thanks", "for", "lunch", "today"]
LABELS_OVERRIDE = "data.labels={toxic: 0, insult: 1, threat: 2}"


def toy_label_sets(n: int = 120, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n`` (text, labels) rows; every label set (the empty one too) occurs, each label on about half the rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [name for bit, name in enumerate(LABELS) if (i >> bit) & 1]  # cycles through all 8 label sets
        words = rng.sample(FILLER, 4) + [rng.choice(WORDS[name]) for name in labels]
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    return rows


def write_multilabel_jsonl(path: Path, n: int = 120) -> Path:
    lines = [json.dumps({"text": text, "labels": labels}) for text, labels in toy_label_sets(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_multilabel_csv(path: Path, n: int = 120, separator: str = "|") -> Path:
    """The same rows as a CSV whose ``labels`` column joins each set with ``separator``."""
    import pandas as pd

    rows = toy_label_sets(n)
    frame = pd.DataFrame({"text": [t for t, _ in rows], "labels": [separator.join(ls) for _, ls in rows]})
    path.write_text(frame.to_csv(index=False), encoding="utf-8")
    return path


def write_flag_columns_csv(path: Path, n: int = 120) -> Path:
    """The same rows with one 0/1 column per label."""
    import pandas as pd

    rows = toy_label_sets(n)
    flags = {name: [int(name in labels) for _, labels in rows] for name in LABELS}
    frame = pd.DataFrame({"text": [text for text, _ in rows]} | flags)
    path.write_text(frame.to_csv(index=False), encoding="utf-8")
    return path


def multilabel_overrides(data_file: Path) -> list[str]:
    """What turns the tiny run of tests/conftest.py into a multi-label run on ``data_file``."""
    return [
        f"data.path={data_file}",
        "data.format=auto",
        "data.label_column=labels",
        LABELS_OVERRIDE,
    ]
