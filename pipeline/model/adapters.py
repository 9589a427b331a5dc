"""LoRA and QLoRA through peft: wrap a model, load a 4-bit base, save and reload an adapter, merge it.

- ``model.mode=lora``: LoRA (or DoRA) adapters on ``adapter.target_modules``. peft's SEQ_CLS task type trains the
  classification head (``score`` in GPT-2 and Llama) in full beside the adapters and saves it with them.
- ``model.mode=qlora``: the same adapters on a base whose linear layers are stored in 4-bit NF4 (bitsandbytes,
  double quantization, bf16 compute). The head stays out of quantization and in fp32, and peft's
  ``prepare_model_for_kbit_training`` freezes the base and upcasts its small unquantized weights to fp32.

This module works on models in memory: it does not read or write model folders. The export stage
(:mod:`pipeline.export`) writes an adapter folder with what :func:`describe_base` says about the base; the serve
stage (:mod:`pipeline.serve`) reads it back with :func:`load_base_model` and :func:`attach_adapter`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from pipeline.config import AdapterConfig
from pipeline.errors import ModelError
from pipeline.model import DTYPES

log = logging.getLogger(__name__)

HEAD_MODULES = ("score", "classifier")
"""Heads of ``*ForSequenceClassification`` models: peft's SEQ_CLS task trains and saves them in full."""


# ---------------------------------------------------------------------------------------------
# QLoRA: what it needs and how the base is loaded


def missing_for_qlora(*, need_cuda: bool = True) -> list[str]:
    """What this machine lacks for 4-bit weights (empty when nothing)."""
    missing = []
    if need_cuda and not torch.cuda.is_available():
        missing.append("a CUDA GPU (none found)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes (pip install 'spam-tune[qlora]')")
    return missing


def require_qlora_support(
    *,
    need_cuda: bool = True,
    what: str = "model.mode=qlora",
    fix: str = "use model.mode=lora to fine-tune without 4-bit weights",
) -> None:
    missing = missing_for_qlora(need_cuda=need_cuda)
    if missing:
        raise ModelError(f"{what} needs {' and '.join(missing)}; {fix}")


def bnb_config(cfg: AdapterConfig) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quant_type,
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=DTYPES[cfg.compute_dtype],
        # The head trains in full, so it stays a plain (fp32) Linear.
        llm_int8_skip_modules=list(HEAD_MODULES),
    )


def qlora_load_kwargs(cfg: AdapterConfig, *, need_cuda: bool | None = None) -> dict[str, Any]:
    """``from_pretrained`` kwargs that load the base with 4-bit linear layers.

    ``dtype=float32`` is for what stays unquantized (embeddings, norms, head): peft's kbit preparation
    upcasts those to fp32 anyway, and loading them in 16-bit first would round them for nothing.
    Each DDP process puts its copy on its own GPU.
    """
    require_qlora_support(need_cuda=not cfg.qlora_on_cpu if need_cuda is None else need_cuda)
    device: int | str = int(os.environ.get("LOCAL_RANK", "0")) if torch.cuda.is_available() else "cpu"
    return {"quantization_config": bnb_config(cfg), "dtype": torch.float32, "device_map": {"": device}}


def quantize_via_checkpoint(model: PreTrainedModel, cfg: AdapterConfig) -> PreTrainedModel:
    """4-bit copy of a model built in memory (``model.from_config``): transformers quantizes while loading.

    The unquantized checkpoint stays in a temp dir (removed with the model) because it is this run's base:
    ``save_adapter_extras`` copies it beside the adapter so the run can be reloaded and merged.
    """
    tmp = Path(tempfile.mkdtemp(prefix="spam-tune-base-"))
    model.save_pretrained(tmp)
    quantized = type(model).from_pretrained(str(tmp), **qlora_load_kwargs(cfg))
    quantized.config._name_or_path = ""  # still a from-config model: no name to reload it by
    quantized.name_or_path = ""
    quantized._spam_tune_base_dir = tmp
    weakref.finalize(quantized, shutil.rmtree, str(tmp), True)
    return quantized


# ---------------------------------------------------------------------------------------------
# Wrapping


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, Conv1D))  # bitsandbytes' Linear4bit is an nn.Linear


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct short names of the linear layers LoRA can target, heads left out (GPT-2: c_attn, c_fc, c_proj)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if _is_linear(module)}
    return sorted(names - set(HEAD_MODULES))


def check_target_modules(model: nn.Module, targets: list[str] | str) -> None:
    """A clear error for target names that match no linear layer (peft matches a name or a dotted suffix)."""
    if isinstance(targets, str):  # "all-linear", checked by AdapterConfig
        return
    layers = [name for name, module in model.named_modules() if _is_linear(module)]
    heads = [t for t in targets if t in HEAD_MODULES]
    missing = [t for t in targets if t not in heads and not any(n == t or n.endswith(f".{t}") for n in layers)]
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    if heads:
        raise ModelError(
            f"adapter.target_modules lists the classification head {heads}, which trains in full already; "
            f"drop it (linear layers of this {model_type} model: {', '.join(linear_module_names(model))})"
        )
    if missing:
        raise ModelError(
            f"adapter.target_modules {missing} match no linear layer of this {model_type} model; its linear "
            f"layers are {', '.join(linear_module_names(model))} (or use adapter.target_modules=all-linear)"
        )


def _targets_conv1d(model: nn.Module, targets: list[str] | str) -> bool:
    """GPT-2 keeps its projections as transposed ``Conv1D``; LoRA must know (peft's ``fan_in_fan_out``)."""
    for name, module in model.named_modules():
        if not isinstance(module, Conv1D) or name.rsplit(".", 1)[-1] in HEAD_MODULES:
            continue
        if isinstance(targets, str) or any(name == t or name.endswith(f".{t}") for t in targets):
            return True
    return False


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """peft probes ``is_gradient_checkpointing``, which transformers 5.23 deprecated; nothing for users to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def lora_config(model: nn.Module, cfg: AdapterConfig):
    from peft import LoraConfig, TaskType

    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,  # peft adds the head (score/classifier) to modules_to_save
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_dora=cfg.use_dora,
        modules_to_save=list(cfg.modules_to_save) if cfg.modules_to_save else None,
        fan_in_fan_out=_targets_conv1d(model, targets),
    )


def wrap_with_adapter(model: PreTrainedModel, adapter_cfg: AdapterConfig, quantized: bool) -> nn.Module:
    """The peft model: LoRA adapters + the trainable head, over a frozen (4-bit when ``quantized``) base."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quantized:
        require_qlora_support(need_cuda=not adapter_cfg.qlora_on_cpu)
        if not getattr(model, "is_loaded_in_4bit", False):
            model = quantize_via_checkpoint(model, adapter_cfg)
        # Freezes the base and upcasts what is not 4-bit to fp32. Activation checkpointing is the Trainer's job
        # (training.gradient_checkpointing, use_reentrant=False), as in every other mode.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    check_target_modules(model, adapter_cfg.target_modules)
    with quiet_peft():
        peft_model = get_peft_model(model, lora_config(model, adapter_cfg))
    # Trainable weights in fp32 even over a 16-bit base: AdamW updates are lost to 16-bit rounding.
    # (A 16-bit base then needs training.bf16/fp16 autocast, which is what makes it worth having.)
    for param in peft_model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return peft_model


# ---------------------------------------------------------------------------------------------
# The base under an adapter: described for saving, rebuilt for inference


@dataclass(frozen=True)
class BaseInfo:
    """How an adapter's base can be had again."""

    name: str | None
    """Hub id or absolute local path to load it from; None when it has no name (random init)."""
    checkpoint_dir: Path | None
    """An unquantized checkpoint of a nameless base (QLoRA over ``model.from_config``), to save beside the adapter."""
    pad_token_id: int | None


def describe_base(model: nn.Module) -> BaseInfo:
    """What reloading ``model``'s base needs; a local base is recorded by absolute path (works from any cwd)."""
    base = model.get_base_model()
    stashed = getattr(base, "_spam_tune_base_dir", None)
    name = base.name_or_path or None
    if stashed is not None:
        name = None
    elif name is not None and Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())
    return BaseInfo(name=name, checkpoint_dir=Path(stashed) if stashed else None, pad_token_id=base.config.pad_token_id)


def save_nameless_base(model: nn.Module, info: BaseInfo, out_dir: Path) -> None:
    """Save a base that has no name to reload it by (random init) into ``out_dir``, unquantized."""
    if info.checkpoint_dir is not None:  # QLoRA over a from-config model: the checkpoint it was quantized from
        shutil.copytree(info.checkpoint_dir, out_dir, dirs_exist_ok=True)
    else:
        plain_base_copy(model).save_pretrained(out_dir)


def load_base_model(
    source: str,
    *,
    dtype: str = "auto",
    quantization: dict[str, Any] | None = None,
    id2label: dict[int, str] | None = None,
    pad_token_id: int | None = None,
    problem_type: str | None = None,
) -> PreTrainedModel:
    """The base model an adapter was trained on, rebuilt the same way (dtype, 4-bit settings, labels).

    ``problem_type`` (``multi_label_classification``) goes into the config as in training: a base loaded by name
    has none of its own, and without it the model's loss would be cross-entropy and a merged copy's config.json
    would tell transformers' pipeline to take a softmax over the labels instead of a sigmoid per label.
    """
    kwargs: dict[str, Any] = {"dtype": DTYPES.get(dtype, "auto")}
    if id2label:
        kwargs |= {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if problem_type is not None:
        kwargs["problem_type"] = problem_type
    if pad_token_id is not None:
        kwargs["pad_token_id"] = pad_token_id
    if quantization:
        require_qlora_support(
            need_cuda=False,
            what="rebuilding the 4-bit base of a QLoRA adapter",
            fix="or merge it (spam-tune merge) where bitsandbytes is installed and use the merged model",
        )
        kwargs |= qlora_load_kwargs(AdapterConfig(**quantization), need_cuda=False)
    try:
        base = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except OSError as err:
        raise ModelError(
            f"cannot load base model {source!r} of the adapter ({str(err).splitlines()[0]}); "
            "offline? make the base available locally and point the folder's metadata (base_model) at it"
        ) from None
    if quantization:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)  # fp32 as in training
    # Over a 16-bit base the adapter and head are fp32: run everything in fp32 so CPU inference works.
    return base.float()


def attach_adapter(base: PreTrainedModel, adapter_dir: Path) -> nn.Module:
    """``base`` with the adapters and head saved in ``adapter_dir`` (peft's files), ready for inference."""
    from peft import PeftModel

    with quiet_peft():
        return PeftModel.from_pretrained(base, str(adapter_dir))


# ---------------------------------------------------------------------------------------------
# Merging


def _unwrap(module: nn.Module) -> nn.Module:
    """The original layer under peft's wrappers (LoRA layer -> base_layer, head wrapper -> original_module)."""
    while True:
        if hasattr(module, "base_layer"):
            module = module.base_layer
        elif hasattr(module, "original_module"):
            module = module.original_module
        else:
            return module


def _plain_tensor(module: nn.Module, name: str) -> torch.Tensor:
    tensor = getattr(module, name)
    if type(tensor).__name__ == "Params4bit":
        from peft.utils.integrations import dequantize_module_weight

        tensor = dequantize_module_weight(module)
    return tensor.detach().to("cpu", torch.float32)


@torch.no_grad()
def plain_base_copy(model: nn.Module) -> PreTrainedModel:
    """An fp32 copy of the base model under ``model``'s adapters: unwrapped, 4-bit weights de-quantized.

    Reads the peft model without changing it. Layers that bitsandbytes stored as ``Linear`` but the
    architecture keeps as ``Conv1D`` (GPT-2) get their weights transposed back. Call it before the first
    forward pass on CPU: there bitsandbytes re-packs 4-bit weights for its CPU kernel on first use.
    """
    base = model.get_base_model()
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = type(base)(config)
    plain.to_empty(device="cpu")
    for module_name, module in plain.named_modules():
        source = _unwrap(base.get_submodule(module_name))
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            value = _plain_tensor(source, name)
            if name == "weight" and isinstance(module, Conv1D) and not isinstance(source, Conv1D):
                value = value.T  # bitsandbytes turned this Conv1D (in x out) into a Linear (out x in)
            tensor.copy_(value)
    return plain.float().eval()


def merged_model(model: nn.Module, adapter_dir: Path, *, quantized: bool, dtype: str = "float32") -> PreTrainedModel:
    """Fold ``model``'s adapters into its base: a plain model with the trained head, for any tool.

    A QLoRA adapter is merged into the 4-bit base it was trained on, de-quantized to 16/32-bit (not into
    the original full-precision weights), so the merged model computes what the trained model computed.
    """
    from peft import PeftModel

    if quantized:
        adapter_cfg = copy.deepcopy(model.peft_config["default"])
        plain = plain_base_copy(model)
        adapter_cfg.fan_in_fan_out = _targets_conv1d(plain, adapter_cfg.target_modules)
        adapter_cfg.inference_mode = True
        with quiet_peft():
            model = PeftModel.from_pretrained(plain, str(adapter_dir), config=adapter_cfg)
    merged = model.merge_and_unload().to(DTYPES[dtype]).eval()
    merged.config._name_or_path = ""
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    return merged
