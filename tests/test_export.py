"""The exported model folder: what it holds, that it loads where users load models, and that it is all-or-nothing.

Models are trained once per module through the real CLI (configs/smoke.yaml and configs/lora.yaml with tiny
overrides), then loaded with plain transformers / peft the way the model card says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from pipeline.cli import main
from pipeline.errors import ModelFolderError
from pipeline.export.folder import resolve_model_dir, write_model_folder
from pipeline.export.metadata import ModelMetadata
from pipeline.export.modelcard import EXAMPLE_SPAM, USAGE_PLACEHOLDER
from pipeline.serve.classifier import Classifier
from tests.conftest import tiny_overrides, write_toy_data

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["WINNER! claim your FREE prize now, call 80037", "are we still meeting for lunch at 12"]
QUICK = {"evaluation.report": "true", "evaluation.plots": "true"}


def _train(root: Path, config: str, **extra: object) -> Path:
    data = write_toy_data(root / "toy.tsv")
    overrides = tiny_overrides(data, root / "run", root / "cache", **QUICK, **extra)
    assert main(["train", "--config", str(REPO / "configs" / config), *overrides]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    run = _train(tmp_path_factory.mktemp("export-full"), "smoke.yaml")
    return SimpleNamespace(run=run, model=run / "model", expected=Classifier(run / "model").probabilities(TEXTS))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    run = _train(tmp_path_factory.mktemp("export-lora"), "lora.yaml", **{"adapter.target_modules": "[c_attn]"})
    return SimpleNamespace(run=run, model=run / "model", expected=Classifier(run / "model").probabilities(TEXTS))


def test_export_full_folder_holds_everything_a_user_needs(full_run: SimpleNamespace) -> None:
    names = {p.name for p in full_run.model.iterdir()}
    expected = {"model.safetensors", "config.json", "tokenizer_config.json", "spam_tune.json", "README.md"}
    assert expected | {"metrics.json", "report.md", "plots", "training_config.yaml"} <= names
    config = json.loads((full_run.model / "config.json").read_text())
    assert config["id2label"] == {"0": "ham", "1": "spam"} and config["label2id"] == {"ham": 0, "spam": 1}
    metadata = ModelMetadata.read(full_run.model)
    assert metadata.mode == "full" and metadata.id2label == {0: "ham", 1: "spam"} and metadata.max_length == 32
    assert (
        metadata.training["test_accuracy"]
        == json.loads((full_run.run / "metrics.json").read_text())["test"]["accuracy"]
    )
    assert "torch" in metadata.versions
    # The report inside the folder links its plots relatively, and they are there.
    for link in re.findall(r"\]\((plots/[^)]+)\)", (full_run.model / "report.md").read_text()):
        assert (full_run.model / link).is_file()
    assert not [p for p in full_run.run.iterdir() if p.name.startswith(".")]  # no leftover temp folders


def test_export_full_folder_loads_in_transformers_pipeline_with_the_same_probabilities(
    full_run: SimpleNamespace,
) -> None:
    classify = pipeline("text-classification", model=str(full_run.model), top_k=None, device="cpu")
    for rows, expected in zip(classify(TEXTS), full_run.expected, strict=True):
        scores = {row["label"]: row["score"] for row in rows}
        assert set(scores) == {"ham", "spam"}
        assert scores["spam"] == pytest.approx(float(expected[1]), abs=1e-5)

    model = AutoModelForSequenceClassification.from_pretrained(str(full_run.model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(full_run.model))
    with torch.no_grad():
        probs = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits.softmax(-1)
    assert torch.allclose(probs, full_run.expected, atol=1e-5)


def _run_card_snippet(folder: Path) -> dict:
    """Execute the first Python block of the folder's model card with the folder as the model location."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace(USAGE_PLACEHOLDER, str(folder))
    namespace: dict = {}
    exec(compile(code, "model-card-snippet", "exec"), namespace)
    return namespace


def test_export_card_snippet_runs_for_a_full_folder(full_run: SimpleNamespace) -> None:
    namespace = _run_card_snippet(full_run.model)
    assert namespace["classifier"]("WINNER! Claim your free prize now")[0]["label"] in ("ham", "spam")


def test_export_adapter_folder_loads_with_auto_peft_and_its_card_snippet_runs(lora_run: SimpleNamespace) -> None:
    from peft import AutoPeftModelForSequenceClassification

    names = {p.name for p in lora_run.model.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "base", "spam_tune.json", "README.md"} <= names
    assert "model.safetensors" not in names
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(lora_run.model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(lora_run.model))
    with torch.no_grad():
        probs = model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits.softmax(-1)
    assert torch.allclose(probs, lora_run.expected, atol=1e-5)

    namespace = _run_card_snippet(lora_run.model)
    expected = Classifier(lora_run.model).probabilities([EXAMPLE_SPAM])
    assert torch.allclose(namespace["probabilities"], expected[0], atol=1e-5)


def test_export_merge_writes_a_full_folder_with_the_run_files(lora_run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert main(["merge", str(lora_run.run), "--out", str(out)]) == 0  # a run dir works as well as its model dir
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "spam_tune.json", "README.md", "report.md", "plots"} <= names
    metadata = ModelMetadata.read(out)
    assert metadata.merged_from == str(lora_run.model.resolve()) and metadata.quantization is None
    assert "library_name: transformers" in (out / "README.md").read_text()
    assert torch.allclose(Classifier(out).probabilities(TEXTS), lora_run.expected, atol=1e-5)


def test_export_failure_leaves_no_folder_behind(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    out = tmp_path / "model"
    with pytest.raises(OSError, match="disk full"):
        write_model_folder(
            out,
            save_weights=broken,
            tokenizer=None,
            metadata=ModelMetadata(id2label={0: "ham", 1: "spam"}),
            card="card",
        )
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden temp sibling


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing", "not found"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "neither a run dir"),
        (lambda d: _write(d / "noweights", {"config.json": "{}", "vocab.json": "{}"}), "has no weights"),
        (lambda d: _write(d / ".model.abc.tmp", {"config.json": "{}"}), "unfinished write"),
    ],
    ids=["missing", "empty", "no-weights", "temp"],
)
def test_export_incomplete_folders_get_a_clear_error(tmp_path: Path, make, fragment: str) -> None:
    with pytest.raises(ModelFolderError, match=fragment):
        resolve_model_dir(make(tmp_path))


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_export_metadata_round_trip_and_bad_file(tmp_path: Path) -> None:
    metadata = ModelMetadata(id2label={0: "ham", 1: "spam"}, threshold=0.42, threshold_strategy="best_f1")
    metadata.write(tmp_path)
    assert ModelMetadata.read(tmp_path) == metadata
    (tmp_path / "spam_tune.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        ModelMetadata.read(tmp_path)
    assert ModelMetadata.read(tmp_path / "nowhere") is None
