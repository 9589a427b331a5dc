"""The model folder: its one writer and its one reader.

A folder holds either a **full** model (transformers weights + ``config.json`` with ``id2label``/``label2id``)
or an **adapter** (peft's ``adapter_config.json`` + ``adapter_model.safetensors``: the LoRA/QLoRA adapters and
the trained head; plus ``base/`` when the base has no name to reload it by), and in both cases the tokenizer,
``spam_tune.json`` (:class:`~pipeline.export.metadata.ModelMetadata`), the model card ``README.md`` and
``metrics.json``; a folder exported from a run also holds ``report.md``, ``plots/`` and ``training_config.yaml``.
A full folder may also hold ``model.onnx`` (``spam-tune export --onnx``, :mod:`pipeline.export.onnx`), the same
classifier as an ONNX graph for ONNX Runtime; whether a folder has one is read from the file, like everything else.

It is built in a hidden sibling and renamed into place (:func:`pipeline.fileio.publish_dir`), so a folder that
exists under its name is complete; :func:`check_model_folder` still says clearly what is missing when a folder
was assembled by hand or copied half-way.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ModelFolderError
from pipeline.export.metadata import BASE_DIR, FILENAME, ModelMetadata
from pipeline.fileio import publish_dir, read_json, write_atomic, write_json

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
FULL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
ONNX_FILE = "model.onnx"
"""The classifier as an ONNX graph: ``input_ids``, ``attention_mask`` (int64) -> ``logits`` (float32)."""
CARD = "README.md"
METRICS = "metrics.json"
TRAINING_CONFIG = "training_config.yaml"
"""The resolved config of the run that trained the model (rebuilds the card after a merge)."""
DEFAULT_MAX_LENGTH = 256
"""Max tokens for a plain transformers checkpoint that does not say how it was trained."""


# ---------------------------------------------------------------------------------------------
# Writing


def write_model_folder(
    out_dir: Path,
    *,
    save_weights: Callable[[Path], None],
    tokenizer: PreTrainedTokenizerBase,
    metadata: ModelMetadata,
    card: str,
    metrics: dict[str, Any] | None = None,
    attachments: dict[str, Path] | None = None,
    save_nameless_base: Callable[[Path], None] | None = None,
    is_main_process: bool = True,
) -> Path:
    """Write a complete model folder at ``out_dir`` (replacing an older one only once the new one is whole).

    ``save_weights(dir)`` writes the weights or the adapter (``Trainer.save_model`` or ``save_pretrained``); under
    DDP/FSDP it runs on every process, since gathering the weights is collective, and only the main process writes.
    ``attachments`` maps names inside the folder to files or directories copied in (report, plots, config).
    ``save_nameless_base(dir)`` saves an adapter's base that has no name to reload it by (random init).
    """
    out_dir = Path(out_dir)
    if not is_main_process:
        save_weights(out_dir)
        return out_dir

    def build(tmp: Path) -> None:
        save_weights(tmp)
        # Trainer.save_model adds a pickle of the TrainingArguments: unsafe to unpickle, and the resolved
        # config (training_config.yaml) says the same in plain text.
        (tmp / "training_args.bin").unlink(missing_ok=True)
        tokenizer.save_pretrained(str(tmp))
        if save_nameless_base is not None:
            save_nameless_base(tmp / BASE_DIR)
            # transformers' pipeline(model=<adapter folder>) takes the tokenizer from the base's folder too; without
            # one there it builds a tokenizer with no vocabulary, whose empty token lists crash the model.
            tokenizer.save_pretrained(str(tmp / BASE_DIR))
            # peft's own loaders (AutoPeftModel, transformers' adapter support) read the base from here.
            _point_adapter_at_base(tmp, out_dir.resolve() / BASE_DIR)
        metadata.write(tmp)
        write_atomic(tmp / CARD, card)
        if metrics is not None:
            write_json(tmp / METRICS, metrics)
        for name, source in (attachments or {}).items():
            if source.is_dir():
                shutil.copytree(source, tmp / name)
            elif source.is_file():
                shutil.copy2(source, tmp / name)

    publish_dir(out_dir, build)
    log.info("wrote model folder %s", out_dir)
    return out_dir


def _point_adapter_at_base(folder: Path, base_dir: Path) -> None:
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(str(folder))
    config.base_model_name_or_path = str(base_dir)
    config.save_pretrained(str(folder))


# ---------------------------------------------------------------------------------------------
# Reading


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, given it or a run dir that holds one in ``model/``; clear errors for anything else."""
    given = Path(path).expanduser()
    if not given.exists():
        raise ModelFolderError(f"{given} not found; pass a run dir (e.g. runs/lora) or its model dir (runs/lora/model)")
    if not given.is_dir():
        raise ModelFolderError(f"{given} is a file; pass a run dir (e.g. runs/lora) or its model dir (runs/lora/model)")
    if not _looks_like_model(given) and (given / "model").is_dir():
        given = given / "model"
    check_model_folder(given)
    return given


def _looks_like_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / ADAPTER_CONFIG).is_file()


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def check_model_folder(folder: Path) -> None:
    """Raise a :class:`ModelFolderError` naming what is missing unless ``folder`` holds a loadable model."""
    folder = Path(folder)
    if folder.name.startswith(".") and folder.name.endswith((".tmp", ".old")):
        raise ModelFolderError(f"{folder} is an unfinished write (interrupted export); use the folder without the dot")
    if not _looks_like_model(folder):
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise ModelFolderError(
            f"{folder} is neither a run dir (with model/) nor a model dir (no config.json or adapter_config.json; "
            f"found {found}); pass the output.dir of a finished training run (e.g. runs/lora) or its model dir"
        )
    weights = ADAPTER_WEIGHTS if is_adapter_folder(folder) else FULL_WEIGHTS
    if not any((folder / name).is_file() for name in weights):
        raise ModelFolderError(
            f"{folder} has no weights ({' or '.join(weights[:2])}): the save did not finish; "
            "train again, or re-export with spam-tune merge"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFolderError(f"{folder} has no tokenizer files (tokenizer.json or vocab.json); re-export the model")


def read_folder_metadata(folder: Path) -> ModelMetadata:
    """The folder's :class:`ModelMetadata`; for a plain transformers checkpoint, built from its ``config.json``."""
    folder = Path(folder)
    metadata = ModelMetadata.read(folder)
    if metadata is not None:
        return metadata
    config = read_json(folder / "config.json")
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    if not id2label:
        raise ModelFolderError(f"{folder} does not say its labels (no id2label in config.json, no {FILENAME})")
    return ModelMetadata(id2label=id2label, max_length=DEFAULT_MAX_LENGTH, base_model=config.get("_name_or_path"))


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    metadata: ModelMetadata


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The folder's tokenizer, padding with EOS on the right when it has no pad token (as in training)."""
    from transformers import AutoTokenizer

    from pipeline.data.tokenize import with_pad_token

    return with_pad_token(AutoTokenizer.from_pretrained(str(folder)))


def load_model_folder(folder: Path) -> LoadedModel:
    """Model (eval mode, on CPU), tokenizer (pad = EOS when it has none) and metadata of a model folder."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    check_model_folder(folder)
    metadata = read_folder_metadata(folder)
    tokenizer = load_tokenizer(folder)
    if is_adapter_folder(folder):
        model = _load_adapter(folder, metadata)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    return LoadedModel(model=model.eval(), tokenizer=tokenizer, metadata=metadata)


def adapter_base_source(folder: Path, metadata: ModelMetadata) -> str:
    """Where an adapter's base comes from: its saved ``base/``, else the recorded name or path."""
    if (folder / BASE_DIR / "config.json").is_file():
        return str(folder / BASE_DIR)
    name = metadata.base_model or read_json(folder / ADAPTER_CONFIG).get("base_model_name_or_path")
    if not name:
        raise ModelFolderError(
            f"the adapter in {folder} does not say which base model it belongs to (no base/ dir, no base_model "
            f"in {FILENAME} or adapter_config.json); re-export it from its run"
        )
    return name


def _load_adapter(folder: Path, metadata: ModelMetadata) -> nn.Module:
    from pipeline.model.adapters import attach_adapter, load_base_model

    base = load_base_model(
        adapter_base_source(folder, metadata),
        dtype=metadata.base_dtype,
        quantization=metadata.quantization,
        id2label=metadata.id2label,
        pad_token_id=metadata.pad_token_id,
        problem_type=metadata.problem_type if metadata.is_multi_label else None,
    )
    return attach_adapter(base, folder)


def copy_folder(
    folder: Path, out_dir: Path, *, skip: tuple[str, ...] = (), add: Callable[[Path], None] | None = None
) -> Path:
    """A copy of a finished model folder (e.g. what ``push --dry-run`` uploads), written atomically.

    ``add(dir)`` writes more files into the copy before it is published (``export --onnx``: the graph and the
    metadata that records it); if it raises, nothing is published. ``out_dir`` may be ``folder`` itself: the copy
    is built aside and swapped in whole.
    """

    def build(tmp: Path) -> None:
        for item in sorted(Path(folder).iterdir()):
            if item.name in skip:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        if add is not None:
            add(tmp)

    return publish_dir(Path(out_dir), build)


# ---------------------------------------------------------------------------------------------
# The ONNX graph (reading; pipeline.export.onnx writes it)


@dataclass
class LoadedOnnx:
    """What ONNX Runtime needs from a folder: the graph's path (no torch weights are loaded), tokenizer, metadata."""

    onnx_path: Path
    tokenizer: PreTrainedTokenizerBase
    metadata: ModelMetadata


def refuse_adapter_for_onnx(folder: Path) -> None:
    """ONNX holds a standalone model: an adapter folder (exported or served) is refused, naming the way there."""
    if is_adapter_folder(folder):
        raise ModelFolderError(
            f"{folder} holds a LoRA/QLoRA adapter, not a standalone model, which ONNX needs; merge it first: "
            f"spam-tune merge {folder} --out MERGED_DIR && spam-tune export MERGED_DIR --onnx"
        )


def onnx_model_path(folder: Path) -> Path:
    """The folder's ``model.onnx``; a :class:`ModelFolderError` naming the command that writes it if there is none."""
    folder = Path(folder)
    refuse_adapter_for_onnx(folder)
    path = folder / ONNX_FILE
    if not path.is_file():
        raise ModelFolderError(
            f"{folder} has no {ONNX_FILE}; write it with: spam-tune export {folder} --onnx (or use --backend torch)"
        )
    return path


def load_onnx_folder(folder: Path) -> LoadedOnnx:
    folder = Path(folder)
    check_model_folder(folder)
    path = onnx_model_path(folder)
    return LoadedOnnx(onnx_path=path, tokenizer=load_tokenizer(folder), metadata=read_folder_metadata(folder))
