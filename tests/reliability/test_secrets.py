"""The Hugging Face token never lands in a file, a log line or a printed config (issue 11, point 7).

With ``HF_TOKEN`` set to a marker, a tiny LoRA run goes through ``config``, ``train``, ``evaluate``, ``merge`` and
``push`` (dry run, then a ``--merged`` push to the Hub look-alike), each the real CLI in its own subprocess.
Then every file under the test's folder (run dir, merged model, dry-run folder, HF_HOME, data cache), every
line those commands printed, and everything the fake Hub received outside the Authorization header are
scanned for the marker.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import tiny_overrides, write_toy_data
from tests.fake_hub import ROOT, Account, FakeHub, cli_env, run_cli

MARKER = "hf_SecretScanMarker5b1f0c9e"
LORA = {"model.mode": "lora", "adapter.target_modules": "[c_attn]", "training.num_train_epochs": 1}


def files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def test_push_train_evaluate_merge_never_write_or_print_the_token(tmp_path: Path) -> None:
    data = write_toy_data(tmp_path / "toy.tsv")
    run = tmp_path / "run"
    overrides = tiny_overrides(data, run, tmp_path / "cache", **LORA)
    smoke = str(ROOT / "configs" / "smoke.yaml")
    # One torch thread per subprocess: see tests/reliability/conftest.py (halves their CPU time on 2 shared cores).
    offline = cli_env(tmp_path / "hf_home", token=MARKER, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    printed: list[str] = []

    def cli(args: list[str], env: dict[str, str]) -> str:
        proc = run_cli(args, env)
        printed.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"{args[0]}: {proc.stderr[-3000:]}"
        return proc.stdout

    assert "repo_id" in cli(["config", "--config", smoke, *overrides], offline)  # the printed config
    cli(["train", "--config", smoke, *overrides], offline)
    hub = FakeHub({MARKER: Account("alice")}).start()
    online = cli_env(tmp_path / "hf_home", endpoint=hub.endpoint, token=MARKER, OMP_NUM_THREADS="1")
    after_training = [
        (["evaluate", str(run)], offline),
        (["merge", str(run / "model"), "--out", str(tmp_path / "merged")], offline),
        (["push", str(run), "--repo-id", "alice/spam-lora", "--merged", "--dry-run", str(tmp_path / "dry")], offline),
        (["push", str(run), "--repo-id", "alice/spam-lora", "--merged"], online),
    ]
    try:
        # Independent of each other (each reads the run, writes its own folder): side by side, most of the
        # time is each process importing torch.
        with ThreadPoolExecutor(len(after_training)) as pool:
            list(pool.map(lambda job: cli(*job), after_training))
    finally:
        hub.stop()
    assert (tmp_path / "dry" / "model.safetensors").is_file()  # a random-init base is not on the Hub: merged
    assert not hub.unhandled
    [commit] = hub.commits
    assert "model.safetensors" in commit.files and "adapter_config.json" not in commit.files  # merged
    assert {"metrics.json", "report.md"} <= set(commit.files)

    needle = MARKER.encode()
    assert files_holding(tmp_path, needle) == []
    assert not [text for text in printed if MARKER in text]
    assert not [path for path, data in commit.files.items() if needle in data]
    for request in hub.requests:
        assert request.headers.pop("authorization") == f"Bearer {MARKER}"
        assert MARKER not in repr(request)
