"""Model stage: load a sequence classifier (:mod:`~pipeline.model.load`), freeze it for a training mode
(:mod:`~pipeline.model.modes`), or wrap it with LoRA / QLoRA adapters (:mod:`~pipeline.model.adapters`)."""

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
"""``model.dtype`` / ``adapter.compute_dtype`` / ``--dtype`` names -> torch dtypes (``auto``: as stored)."""
