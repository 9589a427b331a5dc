"""Data stage: read -> clean -> label map -> (dedupe) -> balance -> split -> ``DatasetDict``; tokenize.

Modules, in the order data flows through them: :mod:`~pipeline.data.download` (UCI file, verified),
:mod:`~pipeline.data.readers` (any source -> ``text``/``label`` table), :mod:`~pipeline.data.clean` (empty
texts, label ids), :mod:`~pipeline.data.split` (dedupe, balance, split, summary), :mod:`~pipeline.data.tokenize`
(tokenizer with pad = EOS, ``datasets.map``, collator).

The names below are re-exported lazily: importing :mod:`pipeline.data.readers` (as ``predict --file`` does)
must not pull in ``datasets``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fetch_uci": "download",
    "UCI_MEMBER": "download",
    "read_table": "readers",
    "read_labeled_file": "readers",
    "clean_and_label": "clean",
    "DataSummary": "split",
    "load_splits": "split",
    "write_split_csvs": "split",
    "SPLITS": "split",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.data.{_EXPORTS[name]}"), name)
