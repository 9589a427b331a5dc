"""How rows become batches: length-grouped training batches and length-sorted evaluation.

SMS texts are 2 to 120+ GPT-2 tokens long (mean ~30). A batch is padded to its longest row, so random
batches of 32 carry ~2.3x the real tokens and the book's fixed padding to the longest row ~3.9x; batches
of rows of similar length carry ~1.07x. Training draws such batches in a new random order every epoch;
evaluation sorts rows by length, which changes no metric, and prediction puts the rows back in dataset order.

With a token budget (``training.train_batch_tokens``) a batch holds as many rows as fit in that many padded
tokens: short texts train in large batches (fewer, fuller steps; on a GPU a small model's step costs about the
same for 32 or 128 short rows) and long texts in small ones, so the peak memory stays that of one full batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import datasets
import numpy as np
from torch.utils.data import DataLoader, Sampler, SequentialSampler
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import seed_worker

from pipeline.data.tokenize import LENGTH


class EpochSeededSampler(Sampler[int]):
    """Row indices that are a function of ``(seed, epoch)`` only (the Trainer and accelerate call ``set_epoch``)."""

    def __init__(self, lengths: Sequence[int], seed: int) -> None:
        self.lengths = np.asarray(lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def indices(self) -> np.ndarray:
        raise NotImplementedError


class LengthGroupedEpochSampler(EpochSeededSampler):
    """Batches of similar-length rows in a fresh random order every epoch (fastai's "sortish" sampler).

    Each epoch: shuffle the rows, cut them into chunks of 50 batches, sort each chunk by length, cut it into
    batches, and shuffle the batches (the longest batch first, so running out of memory shows at once; a short
    batch last).
    Rows of equal length mix at random between batches, and the batch order changes every epoch. On a
    small data set a chunk is the whole set: transformers' ``LengthGroupedSampler`` would use four chunks
    there (1.3x padded tokens at batch 32 instead of 1.07x) and keep each chunk's long-to-short order.

    The order is a function of ``(seed, epoch)`` only: every DDP rank draws the same batches (the global
    torch RNG drifts apart between ranks) and a resumed run repeats the epoch it stopped in. The Trainer
    calls ``set_epoch``. ``batch_size`` is the grouping unit; the loader may cut each group into smaller
    batches (one per process and accumulation step), which stay aligned because a short group comes last.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, chunk_batches: int = 50) -> None:
        super().__init__(lengths, seed)
        self.batch_size = batch_size
        self.chunk_batches = chunk_batches

    def indices(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        shuffled = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.chunk_batches
        batches: list[np.ndarray] = []
        for start in range(0, len(shuffled), chunk):
            part = shuffled[start : start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]  # stable: equal lengths stay shuffled
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if not batches:
            return shuffled
        # The loader cuts the indices into batches again: a short batch must stay last to keep them aligned.
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        if not full:
            return np.concatenate(short)
        longest = int(np.argmax([self.lengths[b].max() for b in full]))
        rest = [b for i, b in enumerate(full) if i != longest]
        return np.concatenate([full[longest], *(rest[i] for i in rng.permutation(len(rest))), *short])


def token_budget_sizes(lengths: Sequence[int], max_rows: int, max_tokens: int, pad_multiple: int = 1) -> list[int]:
    """Rows per batch when the rows are taken longest first and a batch holds as many as fit in ``max_tokens``
    padded tokens (rows x its longest row, rounded up to ``pad_multiple`` as the collator pads), at most
    ``max_rows``; a row longer than the budget gets a batch of its own.

    The sizes depend only on the multiset of lengths, so every epoch has the same number of batches (the
    learning-rate schedule is computed from it once) whatever order equal-length rows take.
    """
    descending = np.sort(np.asarray(lengths, dtype=np.int64))[::-1]
    sizes: list[int] = []
    start = 0
    while start < len(descending):
        longest = -(-int(descending[start]) // pad_multiple) * pad_multiple
        rows = max(1, min(max_rows, max_tokens // max(longest, 1), len(descending) - start))
        sizes.append(rows)
        start += rows
    return sizes


class EpochLengthOrder(EpochSeededSampler):
    """Row indices longest first, rows of equal length in a random order drawn from ``(seed, epoch)``."""

    def indices(self) -> np.ndarray:
        ties = np.random.default_rng([self.seed, self.epoch]).random(len(self.lengths))
        return np.lexsort((ties, -self.lengths))  # the last key sorts first: length, then the random tie-break


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of similar-length rows that each fit a padded-token budget, in a fresh order every epoch.

    The batch sizes are fixed once (:func:`token_budget_sizes`); each epoch the rows are sorted by length with
    ties broken at random and cut at those sizes, and the batches are shuffled (the longest-rows batch first,
    so running out of memory shows at once). Like fairseq's ``max_tokens`` batches, with the rows of each
    length mixing between epochs. The order is a function of ``(seed, epoch)`` only, the same on every DDP
    rank and after a resume (accelerate deals batch k to process k mod N and forwards ``set_epoch`` to
    ``sampler``, as for torch's ``BatchSampler``).
    """

    def __init__(
        self, lengths: Sequence[int], max_rows: int, max_tokens: int, seed: int, pad_multiple: int = 1
    ) -> None:
        self.sampler = EpochLengthOrder(lengths, seed)
        self.max_tokens = max_tokens
        self.sizes = token_budget_sizes(lengths, max_rows, max_tokens, pad_multiple)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.batches())

    def batches(self) -> list[np.ndarray]:
        batches = np.split(self.sampler.indices(), np.cumsum(self.sizes)[:-1])
        rng = np.random.default_rng([self.sampler.seed, self.sampler.epoch, 1])
        return [batches[0], *(batches[i] for i in 1 + rng.permutation(len(batches) - 1))]

    @property
    def mean_rows(self) -> float:
        return float(np.mean(self.sizes))


def sampling_seed(args: TrainingArguments) -> int:
    """The seed of the training order: ``data_seed`` when set (the data order apart from the model's init)."""
    return args.data_seed if args.data_seed is not None else args.seed


def longest_first(dataset: datasets.Dataset) -> datasets.Dataset:
    """The rows sorted by length, longest first (the peak memory shows at once); for order-free metrics."""
    if LENGTH not in dataset.column_names:
        return dataset
    return dataset.select(length_order(dataset))


def length_order(dataset: datasets.Dataset) -> np.ndarray:
    """Row indices by decreasing length (stable, so equal lengths keep dataset order)."""
    lengths = np.asarray(dataset[LENGTH]) if LENGTH in dataset.column_names else np.zeros(len(dataset))
    return np.argsort(-lengths, kind="stable")


class LengthGroupedTrainer(Trainer):
    """``Trainer`` whose training batches group rows by length and whose evaluation keeps the given order.

    With ``train_sampling_strategy="group_by_length"`` transformers also length-groups evaluation, in a
    random order: predictions would no longer line up with the dataset's rows. Here evaluation reads the
    dataset in order (callers sort it by length first, see :func:`longest_first`).

    ``train_batches`` (a :class:`TokenBudgetBatchSampler`, built once by the caller, which also derives the
    loss scale from it) replaces fixed-size training batches.
    """

    def __init__(self, *args, train_batches: TokenBudgetBatchSampler | None = None, **kwargs) -> None:
        self.train_batches = train_batches
        super().__init__(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        sampler = self.train_batches
        if sampler is None:
            return super().get_train_dataloader()
        # transformers' own loader settings (Trainer._get_dataloader), with batches of varying size.
        args = self.args
        params = {
            "batch_sampler": sampler,
            "collate_fn": self.data_collator,
            "num_workers": args.dataloader_num_workers,
            "pin_memory": args.dataloader_pin_memory,
            "persistent_workers": args.dataloader_persistent_workers,
        }
        workers = args.dataloader_num_workers
        if workers > 0:
            params |= {
                "prefetch_factor": args.dataloader_prefetch_factor,
                "multiprocessing_context": getattr(args, "dataloader_multiprocessing_context", None),
                "worker_init_fn": partial(seed_worker, num_workers=workers, rank=args.process_index),
            }
        dataset = self._remove_unused_columns(self.train_dataset, description="Training")
        return self.accelerator.prepare(DataLoader(dataset, **params))

    def _get_train_sampler(self, *args, **kwargs) -> Sampler | None:
        train = self.train_dataset
        wanted = self.args.train_sampling_strategy == "group_by_length"
        if not (wanted and isinstance(train, datasets.Dataset) and LENGTH in train.column_names):
            return super()._get_train_sampler(*args, **kwargs)
        seed = sampling_seed(self.args)
        # Group by what one optimizer step sees: the processes' batches of a step are consecutive slices of
        # one group (accelerate deals batch k to process k mod N), so 2 processes x 8 rows train on the same
        # rows per step as 1 process x 16, and each process still gets rows of similar length.
        step = self._train_batch_size * max(self.args.world_size, 1) * self.args.gradient_accumulation_steps
        return LengthGroupedEpochSampler(train[LENGTH], step, seed)

    def _get_eval_sampler(self, eval_dataset) -> Sampler | None:
        # transformers' choice without group_by_length: in order; under DDP accelerate shards it in order.
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None
