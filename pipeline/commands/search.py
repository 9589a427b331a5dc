"""``spam-tune search``: Optuna over a recipe's learning rate, epochs, batch size and LoRA rank, on validation only.

``Trainer.hyperparameter_search(backend="optuna")`` trains one fresh model per trial (``model_init``) with the
recipe's settings except the searched ones, and scores it on the validation split at the end of its last epoch.
The test split is dropped before tokenization: a search must never see it, or the test numbers of the recipe it
finds stop meaning anything. Each trial trains exactly its ``num_train_epochs`` (no early stopping, no checkpoints),
so the epoch count is searched like the other values. The result is a JSON file with every trial and the
``key=value`` overrides of the best one, ready to paste after ``train.py --config``.

The LoRA rank is suggested inside ``model_init``: transformers builds the model before it applies ``hp_space`` to
the TrainingArguments, and Optuna returns the same value for the same name within a trial. ``adapter.alpha``
scales with the rank, so the update scale alpha / r stays the recipe's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import AdapterConfig, RunConfig
from pipeline.errors import ConfigError, SpamTuneError
from pipeline.fileio import write_json

SEARCHED_KEYS = {
    "learning_rate": "training.learning_rate",
    "num_train_epochs": "training.num_train_epochs",
    "per_device_train_batch_size": "training.per_device_train_batch_size",
    "adapter.r": "adapter.r",
}
METRICS = ("loss", "f1", "accuracy", "precision", "recall")
MULTI_LABEL_METRICS = (*METRICS, "macro_f1", "samples_f1", "hamming_loss")
"""A multi-label recipe's validation scalars (at 0.5 per label): micro precision / recall / F1, subset accuracy."""
LOWER_IS_BETTER = ("loss", "hamming_loss")
STUDY_NAME = "spam-tune"


@dataclass
class SearchSpace:
    """What the search varies; everything else comes from the recipe."""

    learning_rate: tuple[float, float]
    """Log-uniform range."""
    epochs: tuple[int, int]
    """Integer range (inclusive)."""
    batch_sizes: list[int]
    ranks: list[int] | None = None
    """LoRA ranks to try; None for full / last_blocks (or to keep the recipe's rank)."""

    def __post_init__(self) -> None:
        low, high = self.learning_rate
        if not 0 < low <= high:
            raise ConfigError(f"--lr needs 0 < LOW <= HIGH, got {low} {high}; e.g. --lr 1e-5 1e-4")
        if not 1 <= self.epochs[0] <= self.epochs[1]:
            raise ConfigError(
                f"--epochs needs 1 <= LOW <= HIGH, got {self.epochs[0]} {self.epochs[1]}; e.g. --epochs 2 5"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"--batch-sizes needs positive sizes, got {self.batch_sizes}; e.g. --batch-sizes 8 16 32")
        if self.ranks is not None and (not self.ranks or min(self.ranks) < 1):
            raise ConfigError(f"--ranks needs positive LoRA ranks, got {self.ranks}; e.g. --ranks 8 16 32")

    @classmethod
    def around(
        cls,
        cfg: RunConfig,
        *,
        learning_rate: tuple[float, float] | None = None,
        epochs: tuple[int, int] | None = None,
        batch_sizes: list[int] | None = None,
        ranks: list[int] | None = None,
    ) -> SearchSpace:
        """Given ranges, else defaults around the recipe: lr / 3 .. lr x 3, 1 .. its epochs, batch 8/16/32."""
        training = cfg.training
        adapter = cfg.model.mode in ("lora", "qlora")
        if ranks is not None and not adapter:
            raise ConfigError(f"--ranks needs model.mode=lora or qlora, the recipe has model.mode={cfg.model.mode}")
        return cls(
            learning_rate=learning_rate or (training.learning_rate / 3, training.learning_rate * 3),
            epochs=epochs or (1, max(1, math.ceil(training.num_train_epochs))),
            batch_sizes=batch_sizes or [8, 16, 32],
            ranks=ranks if adapter else None,
        )

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``hp_space`` for the Trainer: TrainingArguments field names only (the rank is model_init's)."""
        return {
            "learning_rate": trial.suggest_float("learning_rate", *self.learning_rate, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", *self.epochs),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", self.batch_sizes),
        }


@dataclass
class SearchResult:
    metric: str
    direction: str
    best: dict[str, Any]
    """``{"trial", "value", "params", "overrides"}``."""
    trials: list[dict[str, Any]]
    space: dict[str, Any]
    data: dict[str, int]
    recipe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def scaled_adapter(adapter: AdapterConfig, r: int) -> AdapterConfig:
    """The recipe's adapter at rank ``r`` with the same update scale alpha / r."""
    return dataclasses.replace(adapter, r=r, alpha=max(1, round(adapter.alpha * r / adapter.r)))


def overrides_for(params: dict[str, Any], adapter: AdapterConfig) -> list[str]:
    """``key=value`` config overrides that reproduce a trial with ``train.py --config RECIPE``."""
    out = [f"{name}={params[key]}" for key, name in SEARCHED_KEYS.items() if key in params]
    if "adapter.r" in params:
        out.append(f"adapter.alpha={scaled_adapter(adapter, params['adapter.r']).alpha}")
    return out


def search_config(cfg: RunConfig) -> RunConfig:
    """The recipe as a trial trains it: its full epoch count, scored at the end, nothing saved."""
    training = dataclasses.replace(
        cfg.training,
        load_best_model_at_end=False,
        early_stopping_patience=None,
        save_strategy="no",
        eval_strategy="epoch",
        resume_from_checkpoint=None,
        # Trials train fixed batches of the searched size: a token budget would make the batch size a cap that
        # short texts reach and long ones do not. Up to train_batch_tokens / model.max_length rows the two agree.
        train_batch_tokens=0,
    )
    return dataclasses.replace(cfg, training=training)


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SpamTuneError("spam-tune search needs optuna: pip install 'spam-tune[search]'") from None
    return optuna


def run_search(cfg: RunConfig, space: SearchSpace, *, n_trials: int, metric: str = "loss") -> SearchResult:
    """Run ``n_trials`` Optuna trials (TPE, seeded with ``training.seed``) and return every trial and the best."""
    if n_trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_trials}")
    allowed = MULTI_LABEL_METRICS if cfg.data.is_multi_label else METRICS
    if metric not in allowed:
        raise ConfigError(
            f"--metric must be one of {', '.join(allowed)}"
            f"{' for a multi-label recipe' if cfg.data.is_multi_label else ''}, got {metric!r}"
        )
    optuna = require_optuna()
    from datasets import DatasetDict
    from transformers import Trainer, set_seed

    from pipeline.commands.train import metrics_for
    from pipeline.data.split import load_splits
    from pipeline.data.tokenize import load_tokenizer, make_collator, tokenize_splits
    from pipeline.model.head import head_label_token_ids
    from pipeline.model.load import load_model
    from pipeline.rundir import RunDir
    from pipeline.train.arguments import build_training_arguments
    from pipeline.train.trainer import classification_loss

    cfg = search_config(cfg)
    set_seed(cfg.training.seed)
    args = build_training_arguments(cfg, RunDir(Path(cfg.output.dir) / "search"))
    splits, summary = load_splits(cfg.data)
    splits = DatasetDict({name: splits[name] for name in ("train", "validation")})  # test: never seen
    tokenizer = load_tokenizer(cfg.model)
    cache_dir = Path(cfg.data.cache_dir).expanduser()
    tokenized = tokenize_splits(splits, tokenizer, cfg.model.max_length, cache_dir=cache_dir / "tokenized")

    label_token_ids = head_label_token_ids(cfg.model, cfg.data.id2label, tokenizer)

    def model_init(trial: Any = None) -> Any:
        adapter = cfg.adapter
        if trial is not None and space.ranks:
            adapter = scaled_adapter(adapter, trial.suggest_categorical("adapter.r", space.ranks))
        return load_model(
            cfg.model,
            cfg.data.id2label,
            tokenizer.pad_token_id,
            cache_dir=cache_dir,
            adapter=adapter,
            label_token_ids=label_token_ids,
            problem_type=cfg.data.problem_type if cfg.data.is_multi_label else None,
        )

    trainer = Trainer(
        model_init=model_init,
        args=args,
        data_collator=make_collator(tokenizer),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=metrics_for(cfg),  # the training run's own validation scalars (multi-label: per sigmoid)
        compute_loss_func=(
            classification_loss(summary.class_weights, multi_label=cfg.data.is_multi_label)
            if summary.class_weights
            else None  # transformers' own loss for the model's problem_type
        ),
    )
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    storage = optuna.storages.InMemoryStorage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = trainer.hyperparameter_search(
        hp_space=space.suggest,
        compute_objective=lambda metrics: metrics[f"eval_{metric}"],
        n_trials=n_trials,
        direction=direction,
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=cfg.training.seed),
        study_name=STUDY_NAME,
        storage=storage,
    )
    trials = [
        {"trial": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    ]
    return SearchResult(
        metric=f"validation {metric}",
        direction=direction,
        best={
            "trial": int(best.run_id),
            "value": best.objective,
            "params": best.hyperparameters,
            "overrides": overrides_for(best.hyperparameters, cfg.adapter),
        },
        trials=trials,
        space=dataclasses.asdict(space),
        data={"train_rows": len(splits["train"]), "validation_rows": len(splits["validation"])},
        recipe={"model": cfg.model.name_or_path, "mode": cfg.model.mode, "seed": cfg.training.seed},
    )


def write_search(result: SearchResult, path: Path) -> Path:
    write_json(path, result.to_dict())
    return path


def format_search(result: SearchResult) -> str:
    lines = [f"{'trial':>5s} {result.metric:>18s}  params"]
    for t in result.trials:
        value = "pruned" if t["value"] is None else f"{t['value']:.4f}"
        lines.append(f"{t['trial']:5d} {value:>18s}  {t['params']}")
    best = result.best
    lines.append(f"best: trial {best['trial']}, {result.metric} {best['value']:.4f}")
    lines.append("train it with: " + " ".join(best["overrides"]))
    return "\n".join(lines)
