"""The config contract: YAML + dotted overrides, typed, with one-line errors that name the fix."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import RunConfig, config_keys, load_config
from pipeline.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"full.yaml", "last_blocks.yaml", "smoke.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_its_launch_command(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# accelerate launch") and f"--config configs/{path.name}" in first
    # The resolved config round-trips: what a run saves can be loaded again.
    assert load_config_from_text(cfg.to_yaml(), path.parent) == cfg


def load_config_from_text(text: str, tmp: Path) -> RunConfig:
    raw = yaml.safe_load(text)
    from pipeline.config import from_dict

    return from_dict(RunConfig, raw)


def test_book_recipe_config():
    cfg = load_config(Path("configs/last_blocks.yaml"))
    assert cfg.data.split_mode == "book" and cfg.data.seed == 123
    assert cfg.model.mode == "last_blocks" and cfg.model.trainable_blocks == 1
    assert cfg.data.labels == {"ham": 0, "spam": 1}


def test_overrides_are_typed():
    cfg = load_config(
        None,
        [
            "training.learning_rate=1e-4",  # YAML 1.1 reads this as a string; it must become a float
            "training.num_train_epochs=3",
            "data.split=[0.8,0.1,0.1]",
            "training.bf16=false",
            "data.labels={ok: 0, bad: 1}",
            "output.dir=/tmp/x",
            "training.resume_from_checkpoint=true",
        ],
    )
    assert cfg.training.learning_rate == pytest.approx(1e-4)
    assert cfg.training.num_train_epochs == 3.0 and isinstance(cfg.training.num_train_epochs, float)
    assert cfg.data.split == [0.8, 0.1, 0.1]
    assert cfg.training.bf16 is False
    assert cfg.data.id2label == {0: "ok", 1: "bad"}
    assert cfg.output.dir == "/tmp/x"
    assert cfg.training.resume_from_checkpoint is True


def test_yaml_file_plus_override(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  mode: lora\ntraining:\n  seed: 7\n", encoding="utf-8")
    cfg = load_config(path, ["training.seed=8"])
    assert cfg.model.mode == "lora" and cfg.training.seed == 8


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.pth=x", "did you mean 'data.path'"),
        ("trainig.seed=1", "did you mean 'training'"),
        ("training.learning_rate=fast", "training.learning_rate' expects a number"),
        ("training.num_train_epochs=[1]", "expects a number"),
        ("training.per_device_train_batch_size=8.5", "expects an integer"),
        ("model.mode=qlra", "one of 'full', 'last_blocks', 'lora', 'qlora'"),
        ("training.bf16=maybe", "training.bf16"),
        ("data.split=[0.5,0.5]", "data.split must be three positive fractions"),
        ("data.labels={ham: 0, spam: 2}", "ids 0..K-1"),
        ("data.source=file", "needs data.path"),
        ("training.extra_args.seed=3", "set training.seed directly"),
        ("noequals", "section.key=value"),
        ("model.from_config={n_layer: 2}", "model_type"),
        ("training.train_batch_tokens=-1", "training.train_batch_tokens must be >= 0"),
        ("training.train_batch_tokens=64", "below model.max_length=256: a batch must hold"),
    ],
)
def test_bad_config_is_a_one_line_error(override: str, fragment: str):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_token_budget_batches_need_length_grouping():
    budget = ["training.train_batch_tokens=4096"]
    assert load_config(Path("configs/full.yaml"), budget).training.train_batch_tokens == 4096
    with pytest.raises(ConfigError, match=r"needs training\.train_sampling_strategy=group_by_length"):
        load_config(Path("configs/full.yaml"), [*budget, "training.train_sampling_strategy=random"])
    assert load_config(Path("configs/full.yaml"), ["training.train_sampling_strategy=random"])


def test_missing_and_broken_config_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid UTF-8 YAML"):
        load_config(bad)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"model:\n  name_or_path: caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8 YAML"):
        load_config(latin)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_config_keys_lists_every_leaf_with_defaults():
    keys = {key: default for key, _, default in config_keys()}
    assert keys["training.learning_rate"] == 5e-5
    assert keys["data.balance"] == "undersample"
    assert "adapter.r" in keys and "output.dir" in keys


def test_yaml_bare_no_means_the_string_no():
    # YAML 1.1 reads `no` as false; for a choice that includes "no" the user meant the word.
    cfg = load_config(None, ["training.eval_strategy=no", "training.save_strategy=no"])
    assert cfg.training.eval_strategy == "no" and cfg.training.save_strategy == "no"


def test_docs_document_every_config_key():
    reference = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key, _, _ in config_keys() if f"| `{key}` |" not in reference]
    assert not missing, f"docs/configuration.md lacks {missing}: run `python bench/tables.py`"
