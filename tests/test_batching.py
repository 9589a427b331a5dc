"""Length-grouped training batches, length-sorted evaluation, and predictions back in dataset order."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, TrainingArguments

from pipeline.data.tokenize import bundled_gpt2_tokenizer, make_collator, with_pad_token
from pipeline.evaluation.predictions import predict_probabilities
from pipeline.train.batching import (
    LengthGroupedEpochSampler,
    LengthGroupedTrainer,
    TokenBudgetBatchSampler,
    length_order,
    longest_first,
    token_budget_sizes,
)
from pipeline.train.trainer import classification_loss

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


def tiny_trainer(tmp_path, tokenizer, train: datasets.Dataset, train_batch_tokens: int = 0, **args):
    """A Trainer on ``train``; ``train_batch_tokens`` > 0 gives it token-budget batches, as build_trainer does."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(**TINY_GPT2, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **args)
    size = arguments.train_batch_size
    batches = TokenBudgetBatchSampler(train["length"], size, train_batch_tokens, 0) if train_batch_tokens else None
    return LengthGroupedTrainer(
        model=model,
        args=arguments,
        train_dataset=train,
        data_collator=make_collator(tokenizer, pad_to_multiple_of=None),
        train_batches=batches,
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


def padded_tokens(batch: np.ndarray, size: np.ndarray, multiple: int = 1) -> int:
    return len(batch) * -(-int(size[batch].max()) // multiple) * multiple


@pytest.mark.parametrize("multiple", [1, 8])
def test_token_budget_sizes_fill_the_budget_and_cap_the_rows(multiple):
    size = lengths(500, seed=2)
    sizes = token_budget_sizes(size, max_rows=16, max_tokens=1024, pad_multiple=multiple)
    assert sum(sizes) == len(size)
    descending = np.sort(size)[::-1]
    start = 0
    for rows in sizes:
        longest = -(-int(descending[start]) // multiple) * multiple
        assert rows * longest <= 1024 and rows <= 16
        # Greedy: one more row would break the budget or the cap (or there is none left).
        assert start + rows == len(size) or (rows + 1) * longest > 1024 or rows == 16
        start += rows
    assert sizes[0] < sizes[-2] == 16  # long rows in small batches, short rows up to the cap
    assert token_budget_sizes([500, 3], max_rows=8, max_tokens=256) == [1, 1]  # an over-long row goes alone


def test_token_budget_sampler_partitions_the_rows_every_epoch_within_the_budget():
    size = lengths(300, seed=5)
    sampler = TokenBudgetBatchSampler(size, max_rows=40, max_tokens=800, seed=9, pad_multiple=8)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = [np.asarray(b) for b in sampler]
        assert len(batches) == len(sampler) == len(sampler.sizes)  # the schedule's step count holds every epoch
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(size)))
        assert all(padded_tokens(b, size, 8) <= 800 for b in batches)
        assert size[batches[0]].max() == size.max()  # the longest rows first: out-of-memory shows at once
        epochs.append(batches)
    # A new batch order and new batch members (equal lengths mix) every epoch; the same again for a resumed epoch.
    assert [b.tolist() for b in epochs[0]] != [b.tolist() for b in epochs[1]]
    assert {frozenset(b.tolist()) for b in epochs[0]} != {frozenset(b.tolist()) for b in epochs[1]}
    sampler.set_epoch(1)
    assert [b.tolist() for b in sampler.batches()] == [b.tolist() for b in epochs[1]]
    same_seed = TokenBudgetBatchSampler(size, max_rows=40, max_tokens=800, seed=9, pad_multiple=8)
    same_seed.set_epoch(2)
    assert [b.tolist() for b in same_seed.batches()] == [b.tolist() for b in epochs[2]]  # every DDP rank agrees


def test_trainer_trains_on_token_budget_batches(tmp_path, bundled_tokenizer):
    texts = [f"row {'x ' * int(n // 2)}" for n in lengths(150, seed=6)]  # within the tiny model's positions
    ds = tiny_dataset(bundled_tokenizer, texts)
    trainer = tiny_trainer(tmp_path, bundled_tokenizer, ds, train_batch_tokens=512, per_device_train_batch_size=24)
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    rows = [len(b["labels"]) for b in batches]
    assert sum(rows) == len(ds) and len(set(rows)) > 2 and max(rows) == 24 > min(rows)
    assert all(b["input_ids"].numel() <= 512 for b in batches)  # the collator's real padded tensors
    assert len(loader) == len(batches)
    loader.set_epoch(1)  # what the Trainer calls each epoch, through accelerate's loader
    assert [b["labels"].tolist() for b in loader] != [b["labels"].tolist() for b in batches]
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.args.num_train_epochs = 1
    trainer.train()
    assert trainer.state.global_step == len(batches)
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters(), strict=True))


def test_classification_loss_weighs_every_row_the_same():
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    outputs = {"logits": logits}
    mean = torch.nn.functional.cross_entropy(logits, labels)
    plain = classification_loss()
    assert torch.allclose(plain(outputs, labels), mean)  # evaluation: the batch mean
    # Training hands over the step's row count (all accumulated batches): a 2-batch step of 6 + 6 rows.
    assert torch.allclose(plain(outputs, labels, torch.tensor(12)), mean / 2)
    # Token-budget batches: the sum over rows over the mean rows of a step, whatever this batch's size.
    budget = classification_loss(rows_per_update=4.0)
    assert torch.allclose(budget(outputs, labels, torch.tensor(6)), mean * 6 / 4)
    assert torch.allclose(
        budget({"logits": logits[:2]}, labels[:2], torch.tensor(2)),
        torch.nn.functional.cross_entropy(logits[:2], labels[:2]) * 2 / 4,
    )
    weighted = classification_loss([1.0, 3.0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 3.0]))
    assert torch.allclose(weighted(outputs, labels), expected)
    # Without accumulation the class-weighted training loss is the weighted mean, as before; with 2 batches of
    # 6 rows each is half of it (the Trainer leaves a custom loss unscaled: it was twice too large before).
    assert torch.allclose(weighted(outputs, labels, torch.tensor(6)), expected)
    assert torch.allclose(weighted(outputs, labels, torch.tensor(12)), expected / 2)
