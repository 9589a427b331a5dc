"""LoRA and QLoRA through peft: wrap a model, load a 4-bit base, save and reload an adapter, merge it.

- ``model.mode=lora``: LoRA (or DoRA) adapters on ``adapter.target_modules``. peft's SEQ_CLS task type trains the
  classification head (``score`` in GPT-2 and Llama) in full beside the adapters and saves it with them.
- ``model.mode=qlora``: the same adapters on a base whose linear layers are stored in 4-bit NF4 (bitsandbytes,
  double quantization, bf16 compute). The head stays out of quantization and in fp32, and peft's
  ``prepare_model_for_kbit_training`` freezes the base and upcasts its small unquantized weights to fp32.

A saved adapter dir (``<run>/model``) holds what ``Trainer.save_model`` writes for a peft model
(``adapter_config.json``, ``adapter_model.safetensors`` with the adapters and the head), the tokenizer, and
``spam_tune.json`` saying which base to rebuild and how (name, dtype, 4-bit settings, labels). A base built from
a config (``model.from_config``, random weights) has no name to reload it by, so it is saved too, under ``base/``.
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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from pipeline.config import AdapterConfig
from pipeline.errors import SpamTuneError
from pipeline.fileio import read_json
from pipeline.rundir import MODEL_METADATA, read_model_metadata, write_json

log = logging.getLogger(__name__)

BASE_DIR = "base"
"""Sub-dir of a saved adapter that holds its base model when the base has no name to reload it by."""
HEAD_MODULES = ("score", "classifier")
"""Heads of ``*ForSequenceClassification`` models: peft's SEQ_CLS task trains and saves them in full."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        raise SpamTuneError(f"{what} needs {' and '.join(missing)}; {fix}")


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
        raise SpamTuneError(
            f"adapter.target_modules lists the classification head {heads}, which trains in full already; "
            f"drop it (linear layers of this {model_type} model: {', '.join(linear_module_names(model))})"
        )
    if missing:
        raise SpamTuneError(
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
# Saving and reloading


def save_adapter_extras(
    model: nn.Module, model_dir: Path, *, base_dtype: str, adapter: AdapterConfig | None
) -> dict[str, Any]:
    """What reloading needs beyond the adapter ``Trainer.save_model`` wrote; returns metadata for spam_tune.json.

    ``adapter`` is the run's AdapterConfig for QLoRA (its 4-bit settings rebuild the same quantized base) and
    None for LoRA. A base without a name (``model.from_config``) is saved under ``model_dir/base``.
    """
    base = model.get_base_model()
    name = base.name_or_path or None
    stashed = getattr(base, "_spam_tune_base_dir", None)
    if stashed is not None:  # QLoRA over a from-config model: the unquantized checkpoint it was loaded from
        shutil.copytree(stashed, model_dir / BASE_DIR, dirs_exist_ok=True)
        name, base_dtype = None, "auto"
    elif name is None:
        plain_base_copy(model).save_pretrained(model_dir / BASE_DIR)
        base_dtype = "auto"
    elif Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())  # a local base (or converted GGUF) from any cwd
    quantization = None
    if adapter is not None:
        quantization = {key: getattr(adapter, key) for key in ("quant_type", "double_quant", "compute_dtype")}
    return {
        "base_model": name,
        "base_dtype": base_dtype,
        "quantization": quantization,
        "pad_token_id": base.config.pad_token_id,
    }


def base_source(model_dir: Path, metadata: dict[str, Any]) -> str:
    """Where an adapter's base comes from: its saved ``base/``, else the recorded name or path."""
    if (model_dir / BASE_DIR / "config.json").is_file():
        return str(model_dir / BASE_DIR)
    name = metadata.get("base_model")
    if not name:
        adapter_cfg = read_json(model_dir / "adapter_config.json")
        name = adapter_cfg.get("base_model_name_or_path")
    if not name:
        raise SpamTuneError(
            f"adapter in {model_dir} does not say which base model it belongs to (no base/ dir, no base_model "
            "in spam_tune.json or adapter_config.json); re-save it from its run"
        )
    return name


def load_base_model(model_dir: Path, metadata: dict[str, Any]) -> PreTrainedModel:
    """The base model an adapter was trained on, rebuilt the same way (dtype, 4-bit settings)."""
    source = base_source(model_dir, metadata)
    base_dtype = metadata.get("base_dtype") or "auto"
    kwargs: dict[str, Any] = {"dtype": "auto" if base_dtype == "auto" else DTYPES[base_dtype]}
    if metadata.get("id2label"):
        id2label = {int(k): v for k, v in metadata["id2label"].items()}
        kwargs |= {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    if metadata.get("pad_token_id") is not None:
        kwargs["pad_token_id"] = metadata["pad_token_id"]
    quantization = metadata.get("quantization")
    if quantization:
        require_qlora_support(
            need_cuda=False,
            what=f"rebuilding the 4-bit base of the QLoRA adapter in {model_dir}",
            fix="or merge it (spam-tune merge) where bitsandbytes is installed and use the merged model",
        )
        kwargs |= qlora_load_kwargs(AdapterConfig(**quantization), need_cuda=False)
    try:
        base = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except OSError as err:
        raise SpamTuneError(
            f"cannot load base model {source!r} of the adapter in {model_dir} ({str(err).splitlines()[0]}); "
            "offline? make the base available locally and record its path as base_model in spam_tune.json"
        ) from None
    if quantization:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)  # fp32 as in training
    # Over a 16-bit base the adapter and head are fp32: run everything in fp32 so CPU inference works.
    return base.float()


def load_adapter_model(model_dir: Path) -> nn.Module:
    """A saved LoRA/QLoRA run (``<run>/model``) as an inference-ready peft model: base + adapters + head."""
    from peft import PeftModel

    model_dir = Path(model_dir)
    base = load_base_model(model_dir, read_model_metadata(model_dir))
    with quiet_peft():
        return PeftModel.from_pretrained(base, str(model_dir))


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


def merge_adapter(model_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Fold a run's adapter into its base: a standalone model dir (with the trained head) for any tool.

    A QLoRA adapter is merged into the 4-bit base it was trained on, de-quantized to 16/32-bit (not into
    the original full-precision weights), so the merged model computes what the trained model computed.
    """
    from peft import PeftModel

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "adapter_config.json").is_file():
        raise SpamTuneError(
            f"{model_dir} holds no adapter (adapter_config.json); merge takes the model dir of a LoRA or "
            "QLoRA run, e.g. runs/lora/model"
        )
    if dtype not in DTYPES:
        raise SpamTuneError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SpamTuneError(f"--out {out_dir} exists and is not an empty directory; choose a new one")
    metadata = read_model_metadata(model_dir)
    model = load_adapter_model(model_dir)
    if metadata.get("quantization"):
        adapter_cfg = copy.deepcopy(model.peft_config["default"])
        plain = plain_base_copy(model)
        adapter_cfg.fan_in_fan_out = _targets_conv1d(plain, adapter_cfg.target_modules)
        adapter_cfg.inference_mode = True
        del model
        with quiet_peft():
            model = PeftModel.from_pretrained(plain, str(model_dir), config=adapter_cfg)
    merged = model.merge_and_unload().to(DTYPES[dtype]).eval()
    merged.config._name_or_path = ""
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(tmp)
    merged_metadata = {**metadata, "merged_from": str(model_dir.resolve()), "dtype": dtype}
    for key in ("base_model", "base_dtype", "quantization"):
        merged_metadata.pop(key, None)
    write_json(tmp / MODEL_METADATA, merged_metadata)
    if out_dir.exists():
        out_dir.rmdir()
    tmp.replace(out_dir)
    log.info("merged %s into a standalone %s model at %s", model_dir, dtype, out_dir)
    return out_dir
