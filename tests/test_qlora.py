"""QLoRA end to end on a tiny GPT-2: 4-bit NF4 base, fp32 head, save -> reload, merge into the de-quantized base.

On a GPU machine with bitsandbytes: ``pytest -m gpu tests/test_qlora.py``. Without CUDA the ``cuda`` cases skip.

What must hold after a reload: the same 4-bit bytes and quantization state, the same adapter and head tensors bit
for bit, and then the same probabilities. On CUDA the Trainer trains and evaluates under bf16 autocast (accelerate
wraps ``forward``); the saved model predicts without it, so the trained model is compared unwrapped (exact), and
under autocast within one bf16 rounding step (that mismatch was the cause of the earlier CUDA failures: 4e-4).
The ``cpu`` cases run the same checks where bitsandbytes is installed (recent versions have CPU kernels; 0.50.2
tested) but no GPU is, with ``adapter.qlora_on_cpu=true``. Without bitsandbytes all skip.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from pipeline.cli import main
from pipeline.export.folder import load_model_folder
from pipeline.model.modes import count_parameters
from pipeline.rundir import RunDir
from pipeline.serve.classifier import Classifier
from tests.conftest import BF16_TOLERANCE, tiny_overrides, train_keeping_model, write_toy_data
from tests.test_adapters import QLORA_YAML, QUICK, TEXTS, expected_lora_trainable, probabilities_of

BACKENDS = [pytest.param("cuda", marks=pytest.mark.gpu), "cpu"]


def skip_unless_backend(backend: str) -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("QLoRA needs bitsandbytes: pip install 'spam-tune[qlora]'")
    if backend == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if backend == "cpu" and torch.cuda.is_available():
        pytest.skip("covered by the cuda case on this machine")


@pytest.fixture(scope="module", params=BACKENDS)
def qlora_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One QLoRA run with configs/qlora.yaml (tiny overrides), keeping the model as training ended.

    fp32 compute makes the 4-bit model and its merged copy comparable to float rounding (bf16 compute would
    differ by bf16 rounding); the NF4 storage, double quantization and the rest of the recipe are unchanged.
    """
    skip_unless_backend(request.param)
    root = tmp_path_factory.mktemp(f"qlora-{request.param}")
    data = write_toy_data(root / "toy.tsv")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "cpu":
            import bitsandbytes.nn.modules as bnb_modules

            # On CPUs with AVX512-bf16, bitsandbytes re-packs 4-bit weights for a bf16 kernel at the first
            # inference call; keep its reference kernel so CPU results compare to float rounding.
            patch.setattr(bnb_modules, "has_avx512bf16", lambda: False, raising=False)
        cpu = {"adapter.qlora_on_cpu": True} if request.param == "cpu" else {}
        # TF32 off as well: with it on (training.tf32=auto on Ampere+), the merged model and the 4-bit model
        # round their different matmuls to 10-bit mantissas and differed by 1e-4 on an H100 (2026-11-26).
        settings = {"adapter.compute_dtype": "float32", "training.tf32": False, **cpu, **QUICK}
        overrides = tiny_overrides(data, root / "run", root / "cache", **settings)
        model = train_keeping_model(QLORA_YAML, overrides, patch)
        run = RunDir(root / "run")
        yield SimpleNamespace(run=run, model=model, expected=probabilities_of(model, run.model), root=root)


def test_base_is_4bit_and_only_adapters_and_fp32_head_train(qlora_run: SimpleNamespace) -> None:
    model = qlora_run.model
    c_attn = model.get_base_model().transformer.h[0].attn.c_attn
    assert type(c_attn.base_layer).__name__ == "Linear4bit"
    assert type(c_attn.base_layer.weight).__name__ == "Params4bit"
    assert c_attn.base_layer.weight.quant_state.quant_type == "nf4"
    head = model.get_base_model().score.modules_to_save["default"]
    assert type(head) is torch.nn.Linear and head.weight.dtype == torch.float32 and head.weight.requires_grad
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or ".modules_to_save.default." in n for n in trainable), trainable
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    base = model.get_base_model()
    new_name = hasattr(type(base), "is_activation_checkpointing")  # transformers >= 5.23; before: is_gradient_*
    assert base.is_activation_checkpointing if new_name else base.is_gradient_checkpointing  # qlora.yaml sets it
    metrics = json.loads(qlora_run.run.metrics.read_text())
    assert metrics["parameters"]["mode"] == "qlora"
    assert metrics["parameters"]["trainable"] == expected_lora_trainable() == count_parameters(model)[0]


def test_reload_rebuilds_the_same_4bit_model(qlora_run: SimpleNamespace) -> None:
    model_dir = qlora_run.run.model
    metadata = json.loads((model_dir / "spam_tune.json").read_text())
    assert metadata["quantization"] == {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
    assert (model_dir / "base" / "config.json").is_file()  # the unquantized from-config base
    reloaded = Classifier(model_dir).probabilities(TEXTS)
    assert torch.allclose(reloaded, qlora_run.expected, atol=1e-6, rtol=0)


def test_reload_has_the_same_4bit_bytes_and_adapter_tensors(qlora_run: SimpleNamespace) -> None:
    reloaded = load_model_folder(qlora_run.run.model).model
    quantized = [(n, m) for n, m in qlora_run.model.named_modules() if type(m).__name__ == "Linear4bit"]
    assert quantized
    for name, module in quantized:
        other = reloaded.get_submodule(name)
        assert torch.equal(module.weight.data.cpu(), other.weight.data.cpu()), name
        state, other_state = (
            module.weight.quant_state.as_dict(packed=True),
            other.weight.quant_state.as_dict(packed=True),
        )
        assert state.keys() == other_state.keys()
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value.cpu(), other_state[key].cpu()), (name, key)
    params = dict(reloaded.named_parameters())
    trained = {n: p for n, p in qlora_run.model.named_parameters() if p.requires_grad}
    assert trained and all(torch.equal(p.cpu(), params[n].cpu()) for n, p in trained.items())


def test_trained_model_under_autocast_agrees_within_bf16(qlora_run: SimpleNamespace) -> None:
    if not qlora_run.model.trained_under_autocast:
        pytest.skip("trained without mixed precision (CPU): nothing to compare")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        under_autocast = probabilities_of(qlora_run.model, qlora_run.run.model)
    print(f"max |p(autocast) - p(saved)| = {(under_autocast - qlora_run.expected).abs().max():.2e}")
    assert torch.equal(under_autocast.argmax(-1), qlora_run.expected.argmax(-1))
    assert torch.allclose(under_autocast, qlora_run.expected, atol=BF16_TOLERANCE, rtol=0)


def test_merge_folds_the_adapter_into_the_dequantized_base(qlora_run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert main(["merge", str(qlora_run.run.model), "--out", str(out)]) == 0
    assert not any(p.name.startswith("adapter_") for p in out.iterdir())
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    plain = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert type(plain.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # GPT-2's own layout again
    assert torch.allclose(Classifier(out).probabilities(TEXTS), qlora_run.expected, atol=1e-5, rtol=0)
