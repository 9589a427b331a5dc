"""Model loading (Hub id, local dir, GGUF file or a config) and the full / last-blocks freezing modes.

LoRA and QLoRA wrapping live in :mod:`pipeline.model.adapters`; this module calls into it for those modes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel

from pipeline.config import AdapterConfig, ModelConfig
from pipeline.data.tokenize import check_local_dir
from pipeline.errors import ModelError
from pipeline.model import DTYPES
from pipeline.model.modes import count_parameters, freeze_all_but_last_blocks

log = logging.getLogger(__name__)


def load_model(
    cfg: ModelConfig,
    id2label: dict[int, str],
    pad_token_id: int,
    *,
    cache_dir: Path,
    adapter: AdapterConfig | None = None,
    main_process_first: Callable[[], AbstractContextManager] | None = None,
    label_token_ids: dict[int, list[list[int]]] | None = None,
    problem_type: str | None = None,
) -> PreTrainedModel:
    """Load a sequence classifier with ``len(id2label)`` classes and apply ``cfg.mode``.

    ``problem_type`` (``multi_label_classification``) goes into the model config, where transformers reads it:
    its loss becomes BCE with logits, and its text-classification pipeline applies a sigmoid per label.

    ``pad_token_id`` goes into the model config: ``*ForSequenceClassification`` pools the last
    non-pad token of each row, so it must match the tokenizer's pad (EOS for GPT-2).
    ``label_token_ids`` (``model.head_init=label_words``): the head starts from those tokens' output embeddings,
    before the mode freezes or wraps anything (peft's SEQ_CLS copies the head it finds).
    """
    labels = {
        "num_labels": len(id2label),
        "id2label": dict(id2label),
        "label2id": {v: k for k, v in id2label.items()},
        "pad_token_id": pad_token_id,
    } | ({"problem_type": problem_type} if problem_type else {})
    if cfg.from_config is not None:
        model = _from_config(cfg.from_config, labels)
    else:
        check_local_dir(cfg.name_or_path, "model.name_or_path")
        source = cfg.name_or_path
        if cfg.gguf_file:
            guard = main_process_first() if main_process_first else contextlib.nullcontext()
            with guard:
                source = str(convert_gguf(cfg.name_or_path, cfg.gguf_file, cache_dir / "converted"))
        model = _from_pretrained(source, cfg, labels, adapter)
    model.config.pad_token_id = pad_token_id
    if cfg.head_init == "label_words":
        if label_token_ids is None:
            raise ModelError("model.head_init=label_words needs the label words' token ids")
        from pipeline.model.head import init_head_from_label_words

        init_head_from_label_words(model, label_token_ids)
    if cfg.mode == "last_blocks":
        freeze_all_but_last_blocks(model, cfg.trainable_blocks)
    elif cfg.mode in ("lora", "qlora"):
        from pipeline.model.adapters import wrap_with_adapter

        model = wrap_with_adapter(model, adapter or AdapterConfig(), quantized=cfg.mode == "qlora")
    trainable, total = count_parameters(model)
    log.info(
        "model %s, mode %s: %s of %s parameters trainable",
        model.config.model_type,
        cfg.mode,
        f"{trainable:,}",
        f"{total:,}",
    )
    return model


def _from_config(values: dict[str, Any], labels: dict[str, Any]) -> PreTrainedModel:
    values = dict(values)
    config = AutoConfig.for_model(values.pop("model_type"), **values, **labels)
    return AutoModelForSequenceClassification.from_config(config)


def _from_pretrained(
    source: str, cfg: ModelConfig, labels: dict[str, Any], adapter: AdapterConfig | None
) -> PreTrainedModel:
    kwargs: dict[str, Any] = {
        "dtype": DTYPES[cfg.dtype],
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.mode == "qlora":
        from pipeline.model.adapters import qlora_load_kwargs

        kwargs.update(qlora_load_kwargs(adapter or AdapterConfig()))
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, **labels, **kwargs)
    except OSError as err:
        raise ModelError(
            f"cannot load model {source!r} ({str(err).splitlines()[0]}); offline? pass a local checkpoint dir "
            "with model.name_or_path=DIR (plus model.gguf_file=FILE for a GGUF file)"
        ) from None


def convert_gguf(directory: str, gguf_file: str, cache_root: Path) -> Path:
    """De-quantize a GGUF file once into a plain checkpoint dir and return it (cached by file identity).

    transformers loads GGUF weights but marks the model as GGUF-quantized, which ``Trainer`` and
    ``save_pretrained`` refuse; rebuilding the model from its config without the quantization
    marker gives an ordinary float checkpoint that every later run loads in a second.
    """
    src = Path(directory).expanduser() / gguf_file
    if not src.is_file():
        raise ModelError(f"GGUF file {src} not found; check model.name_or_path (its dir) and model.gguf_file")
    stat = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_root.expanduser() / f"{src.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer

    log.info("converting %s into a plain checkpoint at %s (once)", src, out)
    quantized = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    plain.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name).save_pretrained(tmp)
    tmp.replace(out)  # atomic: a crash never leaves a half-written checkpoint that looks complete
    return out
