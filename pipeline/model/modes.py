"""Training modes that freeze parameters without peft: ``last_blocks``; parameter counting for every mode."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from pipeline.errors import ModelError


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (``transformer.h`` in GPT-2, ``model.layers`` in Llama)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, base.base_model_prefix, base)
    for module in base.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise ModelError(f"cannot find the transformer blocks of {type(model).__name__}; use model.mode=full or lora")


def freeze_all_but_last_blocks(model: PreTrainedModel, n_blocks: int) -> None:
    """The book's recipe: train only the last ``n_blocks`` blocks, the final norm and the head."""
    blocks = transformer_blocks(model)
    if n_blocks > len(blocks):
        raise ModelError(f"model.trainable_blocks={n_blocks} but the model has only {len(blocks)} blocks")
    model.requires_grad_(False)
    for block in blocks[-n_blocks:]:
        block.requires_grad_(True)
    base = getattr(model, model.base_model_prefix)
    for name, child in base.named_children():
        if "norm" in type(child).__name__.lower() or name in ("ln_f", "norm", "final_layer_norm"):
            child.requires_grad_(True)
    # Everything outside the backbone is the task head (`score` for GPT-2 and Llama).
    for name, child in model.named_children():
        if name != model.base_model_prefix:
            child.requires_grad_(True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; peft's counter knows 4-bit packed weights."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
