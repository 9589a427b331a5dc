"""Length-grouped training batches, length-sorted evaluation, and predictions back in dataset order."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, TrainingArguments

from pipeline.data.tokenize import bundled_gpt2_tokenizer, make_collator, with_pad_token
from pipeline.evaluation.predictions import predict_probabilities
from pipeline.train.batching import LengthGroupedEpochSampler, LengthGroupedTrainer, length_order, longest_first

from .conftest import TINY_GPT2


@pytest.fixture(scope="module")
def bundled_tokenizer():
    return with_pad_token(bundled_gpt2_tokenizer())


def lengths(n: int = 203, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(2, 120, size=n)


def padded_ratio(order: np.ndarray, size: np.ndarray, batch: int) -> float:
    """Tokens after padding each batch to its longest row, over the real tokens."""
    batches = [size[order[i : i + batch]] for i in range(0, len(order), batch)]
    return sum(len(b) * b.max() for b in batches) / size.sum()


def test_sampler_is_a_permutation_fixed_by_seed_and_epoch():
    size = lengths()
    sampler = LengthGroupedEpochSampler(size, batch_size=16, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(len(size)))
    assert list(LengthGroupedEpochSampler(size, batch_size=16, seed=7)) == first  # every rank draws the same
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(len(size))) and second != first  # a new order every epoch
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch repeats itself


def test_sampler_batches_rows_of_similar_length_longest_first_short_last():
    size = lengths()
    order = np.asarray(list(LengthGroupedEpochSampler(size, batch_size=16, seed=1)))
    grouped = padded_ratio(order, size, 16)
    shuffled = padded_ratio(np.random.default_rng(1).permutation(len(size)), size, 16)
    assert grouped < 1.15 < 1.5 < shuffled
    assert size[order[:16]].max() == size.max()  # the biggest batch first: out-of-memory shows at once
    batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert len(batches[-1]) == len(size) % 16  # the short batch last keeps the loader's batches aligned
    # The batch order is shuffled, not a long-to-short sweep.
    maxima = [size[b].max() for b in batches[1:-1]]
    assert maxima != sorted(maxima, reverse=True)


def test_sampler_groups_per_step_so_process_batches_are_slices_of_one_group():
    size = lengths(96)
    step = np.asarray(list(LengthGroupedEpochSampler(size, batch_size=16, seed=3)))
    # 2 processes x 8 rows: accelerate deals batch k to process k % 2; a step's two batches are one group.
    for k in range(0, len(step), 16):
        group = step[k : k + 16]
        assert sorted(size[group], reverse=True) == list(size[group])


def test_length_order_and_longest_first():
    ds = datasets.Dataset.from_dict({"length": [3, 9, 1, 9, 4], "label": [0, 1, 0, 1, 0]})
    assert length_order(ds).tolist() == [1, 3, 4, 0, 2]  # stable: equal lengths keep dataset order
    assert longest_first(ds)["length"] == [9, 9, 4, 3, 1]
    plain = datasets.Dataset.from_dict({"label": [0, 1]})
    assert longest_first(plain) is plain


def tiny_dataset(tokenizer, texts: list[str]) -> datasets.Dataset:
    encoded = tokenizer(texts)
    rows = {
        **encoded,
        "length": [len(ids) for ids in encoded["input_ids"]],
        "label": [i % 2 for i in range(len(texts))],
    }
    return datasets.Dataset.from_dict(rows)


def tiny_trainer(tmp_path, tokenizer, train: datasets.Dataset, **args) -> LengthGroupedTrainer:
    torch.manual_seed(0)
    config = AutoConfig.for_model(**TINY_GPT2, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **args)
    return LengthGroupedTrainer(
        model=model, args=arguments, train_dataset=train, data_collator=make_collator(tokenizer)
    )


def test_predictions_come_back_in_dataset_order(tmp_path, bundled_tokenizer):
    texts = [f"message {'word ' * (i * 7 % 23)}{i}" for i in range(37)]
    ds = tiny_dataset(bundled_tokenizer, texts)
    trainer = tiny_trainer(tmp_path, bundled_tokenizer, ds, per_device_eval_batch_size=8)
    probabilities = predict_probabilities(trainer, ds)
    model = trainer.model.eval()
    with torch.no_grad():
        one_by_one = [
            torch.softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1).numpy()
            for ids in ds["input_ids"]
        ]
    np.testing.assert_allclose(probabilities, np.stack(one_by_one), atol=1e-5)


def test_trainer_groups_training_batches_and_keeps_evaluation_in_order(tmp_path, bundled_tokenizer):
    texts = [f"row {'x ' * int(n)}" for n in lengths(120, seed=4)]
    ds = tiny_dataset(bundled_tokenizer, texts)
    grouped = tiny_trainer(
        tmp_path, bundled_tokenizer, ds, per_device_train_batch_size=8, train_sampling_strategy="group_by_length"
    )
    loader = grouped.get_train_dataloader()
    assert isinstance(loader.batch_sampler.sampler, LengthGroupedEpochSampler)
    padded = sum(batch["input_ids"].numel() for batch in loader)
    real = sum(ds["length"])
    assert padded / real < 1.2
    eval_order = list(grouped._get_eval_sampler(ds))
    assert eval_order == list(range(len(ds)))  # transformers would length-group (shuffle) evaluation too
    plain = tiny_trainer(tmp_path, bundled_tokenizer, ds, per_device_train_batch_size=8)
    assert not isinstance(plain.get_train_dataloader().batch_sampler.sampler, LengthGroupedEpochSampler)
