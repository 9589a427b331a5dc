"""``spam-tune search``: Optuna trials over a recipe on validation only (tiny GPT-2, toy data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.commands.search import SearchSpace, overrides_for, scaled_adapter, search_config
from pipeline.config import load_config
from pipeline.errors import ConfigError

pytest.importorskip("optuna")


def test_lora_search_tries_ranks_and_prints_overrides_that_load(tiny_run, tmp_path: Path, capsys):
    out = tmp_path / "search.json"
    argv = ["search", "--config", "configs/lora.yaml", *tiny_run(**{"training.num_train_epochs": 1})]
    argv += ["--trials", "2", "--lr", "1e-3", "5e-3", "--epochs", "1", "2", "--batch-sizes", "16", "32"]
    argv += ["--ranks", "2", "4", "--out", str(out)]
    assert main(argv) == 0

    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["metric"] == "validation loss" and result["direction"] == "minimize"
    assert result["data"] == {"train_rows": 84, "validation_rows": 12}  # the 24 test rows are never used
    assert [t["state"] for t in result["trials"]] == ["COMPLETE", "COMPLETE"]
    for trial in result["trials"]:
        params = trial["params"]
        assert set(params) == {"learning_rate", "num_train_epochs", "per_device_train_batch_size", "adapter.r"}
        assert 1e-3 <= params["learning_rate"] <= 5e-3 and params["adapter.r"] in (2, 4)
        assert trial["value"] > 0  # a validation loss
    best = result["best"]
    assert best["value"] == min(t["value"] for t in result["trials"])
    cfg = load_config(Path("configs/lora.yaml"), best["overrides"])  # the printed overrides are valid config
    assert cfg.adapter.r == best["params"]["adapter.r"] and cfg.adapter.alpha == 2 * cfg.adapter.r
    assert "train it with: training.learning_rate=" in capsys.readouterr().out


def test_search_space_defaults_and_errors():
    cfg = load_config(Path("configs/smollm2_lora.yaml"))
    space = SearchSpace.around(cfg)
    assert space.learning_rate == pytest.approx((cfg.training.learning_rate / 3, cfg.training.learning_rate * 3))
    assert space.epochs == (1, 5) and space.ranks is None
    with pytest.raises(ConfigError, match=r"--ranks needs model\.mode"):
        SearchSpace.around(load_config(Path("configs/smollm2_full.yaml")), ranks=[8])
    with pytest.raises(ConfigError, match="--lr"):
        SearchSpace(learning_rate=(1e-3, 1e-4), epochs=(1, 2), batch_sizes=[8])
    assert scaled_adapter(cfg.adapter, 8).alpha == 16
    assert overrides_for({"adapter.r": 8, "learning_rate": 1e-4}, cfg.adapter) == [
        "training.learning_rate=0.0001",
        "adapter.r=8",
        "adapter.alpha=16",
    ]


def test_trials_train_fixed_batches_of_the_searched_size():
    cfg = load_config(Path("configs/full.yaml"), ["training.train_batch_tokens=4096"])
    trial = search_config(cfg).training
    assert trial.train_batch_tokens == 0 and not trial.load_best_model_at_end and trial.save_strategy == "no"
