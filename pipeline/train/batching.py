"""How rows become batches: length-grouped training batches and length-sorted evaluation.

SMS texts are 2 to 120+ GPT-2 tokens long (mean ~30). A batch is padded to its longest row, so random
batches of 32 carry ~2.3x the real tokens and the book's fixed padding to the longest row ~3.9x; batches
of rows of similar length carry ~1.07x. Training draws such batches in a new random order every epoch;
evaluation sorts rows by length, which changes no metric, and prediction puts the rows back in dataset order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import datasets
import numpy as np
from torch.utils.data import Sampler, SequentialSampler
from transformers import Trainer

from pipeline.data.tokenize import LENGTH


class LengthGroupedEpochSampler(Sampler[int]):
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
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.chunk_batches = chunk_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

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
    """

    def _get_train_sampler(self, *args, **kwargs) -> Sampler | None:
        train = self.train_dataset
        wanted = self.args.train_sampling_strategy == "group_by_length"
        if not (wanted and isinstance(train, datasets.Dataset) and LENGTH in train.column_names):
            return super()._get_train_sampler(*args, **kwargs)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
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
