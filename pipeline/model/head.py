"""Start the classification head from what the pretrained LM already knows: its output embedding of each class's
label word (``model.head_init: label_words``).

A decoder LM's next-token logit for token ``t`` is ``h · E[t]``: the final hidden state of the last token times
``t``'s row of the output embedding. ``*ForSequenceClassification`` scores that same hidden state with its head,
``h · W[c]``. Setting ``W[c] = E[word of class c]`` (the mean of its tokens' rows when the word is several tokens,
or of several words) makes the untrained classifier's logits exactly the LM's logits for those words, so training
starts from the model's own "which word comes next" judgement instead of a random head: prompt-based fine-tuning
(LM-BFF) with the classifier's loss. With ``model.input_template`` ending in a question ("... spam or ham?
Answer:"), the prior is the model's answer to it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pipeline.config import ModelConfig
from pipeline.errors import ModelError

log = logging.getLogger(__name__)


def label_words(
    id2label: Mapping[int, str], configured: Mapping[str, str | Sequence[str]] | None
) -> dict[int, list[str]]:
    """The words of each class id: ``configured[name]`` (a word or a list), else the class name after a space
    (``" spam"``: the token a sentence continues with)."""
    configured = dict(configured or {})
    unknown = sorted(set(configured) - set(id2label.values()))
    if unknown:
        raise ModelError(
            f"model.label_words names {unknown}, which are not classes; the classes are {sorted(id2label.values())}"
        )
    words: dict[int, list[str]] = {}
    for idx, name in sorted(id2label.items()):
        given = configured.get(name, f" {name}")
        words[idx] = [given] if isinstance(given, str) else list(given)
        if not words[idx] or not all(isinstance(w, str) and w for w in words[idx]):
            raise ModelError(f"model.label_words.{name} must be a non-empty word or list of words, got {given!r}")
    return words


def label_token_ids(tokenizer: PreTrainedTokenizerBase, words: Mapping[int, list[str]]) -> dict[int, list[list[int]]]:
    """Token ids of every word (no special tokens, no input template: the bare word as the LM would write it)."""
    ids: dict[int, list[list[int]]] = {}
    for idx, class_words in words.items():
        ids[idx] = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in class_words]
        empty = [w for w, t in zip(class_words, ids[idx], strict=True) if not t]
        if empty:
            raise ModelError(f"label word(s) {empty} give no tokens; set model.label_words to real words")
    if len({tuple(map(tuple, v)) for v in ids.values()}) < len(ids):
        raise ModelError(f"two classes have the same label-word tokens ({ids}); set distinct model.label_words")
    return ids


def output_embedding(model: PreTrainedModel) -> torch.Tensor:
    """The LM's output embedding (vocab x hidden). A sequence classifier has no LM head, so only a model whose
    head is tied to its input embedding (GPT-2, SmolLM2, Gemma 3, Llama 3.2 1B, ...) can tell it."""
    if not getattr(model.config, "tie_word_embeddings", False):
        raise ModelError(
            f"model.head_init=label_words needs the LM's output embedding, but {model.config.model_type}'s LM head "
            "is not tied to its input embedding (the classifier does not load it); use model.head_init=random"
        )
    return model.get_input_embeddings().weight


def classification_head(model: PreTrainedModel) -> nn.Linear:
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise ModelError(
            f"model.head_init=label_words needs a linear head (score or classifier); {type(model).__name__} has "
            f"{type(head).__name__}; use model.head_init=random"
        )
    return head


@torch.no_grad()
def init_head_from_label_words(model: PreTrainedModel, token_ids: Mapping[int, list[list[int]]]) -> None:
    """Row ``c`` of the head := the mean output embedding of class ``c``'s words (each the mean of its tokens)."""
    head = classification_head(model)
    embedding = output_embedding(model)
    if head.out_features != len(token_ids):
        raise ModelError(f"the head has {head.out_features} classes, label words were given for {len(token_ids)}")
    for idx, words in token_ids.items():
        rows = [embedding[torch.tensor(ids, device=embedding.device)].float().mean(0) for ids in words]
        head.weight[idx] = torch.stack(rows).mean(0).to(head.weight.dtype)
    if head.bias is not None:
        head.bias.zero_()
    log.info("classification head initialised from the label words' output embeddings: %s", dict(token_ids))


def head_label_token_ids(
    cfg: ModelConfig, id2label: Mapping[int, str], tokenizer: PreTrainedTokenizerBase
) -> dict[int, list[list[int]]] | None:
    """The label words' token ids when ``model.head_init=label_words``; None for a random head."""
    if cfg.head_init != "label_words":
        return None
    return label_token_ids(tokenizer, label_words(id2label, cfg.label_words))
