"""``spam-tune push``: the real huggingface_hub client against a Hub look-alike on 127.0.0.1 (tests/fake_hub.py).

A tiny model is smoke-trained once for the module; each test pushes it through the CLI in a subprocess (so
HF_ENDPOINT is read the way users set it) or calls ``push_folder`` in-process with ``endpoint=``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import constants

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError, PushError
from pipeline.export import push
from tests.conftest import tiny_overrides, write_toy_data
from tests.fake_hub import ROOT, Account, FakeHub, Repo, cli_env, closed_port, run_cli

TOKEN = "hf_pushTestMarker7Qx2"
"""Looks like a token; must reach the Hub in the Authorization header and nowhere else."""
ACCOUNTS = {
    TOKEN: Account("alice", orgs=("acme",)),
    "hf_readOnly": Account("alice", role="read"),
    "hf_fineGrainedNoWrite": Account("alice", role="fineGrained"),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke-trained tiny full model (run dir with model/, metrics.json, report.md, plots/)."""
    root = tmp_path_factory.mktemp("push")
    data = write_toy_data(root / "toy.tsv")
    overrides = tiny_overrides(data, root / "run", root / "cache", **{"training.num_train_epochs": 1})
    assert main(["train", "--config", str(ROOT / "configs" / "smoke.yaml"), *overrides]) == 0
    return root / "run"


@pytest.fixture
def hub():
    server = FakeHub(ACCOUNTS, repos={"bob/taken": Repo(owner="bob", private=False)}).start()
    yield server
    server.stop()
    assert not server.unhandled, f"the client called routes the fake hub lacks: {server.unhandled}"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/conftest.py turns huggingface_hub's offline mode on for the whole suite; in-process pushes to
    # the fake hub on 127.0.0.1 need it off.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def push_cli(run_dir: Path, hub: FakeHub, tmp_path: Path, *args: str, token: str | None = TOKEN, **extra_env: str):
    env = cli_env(tmp_path / "hf_home", endpoint=hub.endpoint, token=token, **extra_env)
    return run_cli(["push", str(run_dir), *args], env)


# ---------------------------------------------------------------------------------------------
# Through the CLI


def test_push_commits_exactly_the_dry_run_folder(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    dry = push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/spam-tiny", "--dry-run", str(tmp_path / "dry"))
    assert dry.returncode == 0, dry.stderr
    assert hub.requests == []  # a dry run makes no network call, even with a token and an endpoint at hand
    staged = folder_bytes(tmp_path / "dry")
    model_files = set(folder_bytes(run_dir / "model"))
    run_files = {"metrics.json", "report.md", *(f"plots/{p.name}" for p in (run_dir / "plots").iterdir())}
    assert set(staged) == model_files | run_files
    assert {"model.safetensors", "config.json", "README.md", "spam_tune.json", "plots/loss.png"} <= set(staged)

    proc = push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/spam-tiny", "--commit-message", "first model")
    assert proc.returncode == 0, proc.stderr
    [commit] = hub.commits
    assert proc.stdout.strip() == f"{hub.endpoint}/alice/spam-tiny/commit/{commit.oid}"
    assert (commit.repo_id, commit.branch, commit.summary) == ("alice/spam-tiny", "main", "first model")
    assert commit.files == staged
    assert hub.repos["alice/spam-tiny"].private  # private unless --public


def test_push_token_travels_only_in_the_authorization_header(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    proc = push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/spam-tiny")
    assert proc.returncode == 0, proc.stderr
    assert [r.path for r in hub.requests] == [
        "/api/whoami-v2",
        "/api/repos/create",
        "/api/validate-yaml",
        "/api/models/alice/spam-tiny/preupload/main",
        "/api/models/alice/spam-tiny/commit/main",
    ]
    for request in hub.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        others = [v for k, v in request.headers.items() if k != "authorization"]
        assert not any(TOKEN in text for text in [*others, request.path, request.query])
        assert TOKEN.encode() not in request.body
    assert not any(TOKEN.encode() in data for data in hub.commits[0].files.values())
    assert TOKEN not in proc.stdout + proc.stderr


def test_push_revision_creates_the_branch_then_reuses_it(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    for message in ("one", "two"):
        args = ("--repo-id", "acme/spam-tiny", "--revision", "dev", "--private", "--commit-message", message)
        proc = push_cli(run_dir, hub, tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
    assert [(c.branch, c.summary) for c in hub.commits] == [("dev", "one"), ("dev", "two")]
    assert hub.repos["acme/spam-tiny"].branches["main"] == {}  # nothing landed on main
    assert set(hub.repos["acme/spam-tiny"].branches["dev"]) == set(hub.commits[0].files)
    branch_calls = [r for r in hub.requests if r.path == "/api/models/acme/spam-tiny/branch/dev"]
    assert len(branch_calls) == 2  # the second answered 409 "exists", which create_branch(exist_ok=True) accepts
    assert hub.repos["acme/spam-tiny"].private is True


def test_push_public_flag_reaches_create_repo(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    assert push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/open", "--public").returncode == 0
    assert json.loads(hub.requests[1].body) == {"name": "open", "organization": "alice", "visibility": "public"}
    assert hub.repos["alice/open"].private is False


def test_push_uses_the_hf_auth_login_store(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    home = tmp_path / "hf_home"
    home.mkdir()
    (home / "token").write_text(TOKEN)  # where `hf auth login` stores it (HF_HOME/token)
    proc = push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/from-store", token=None)
    assert proc.returncode == 0, proc.stderr
    assert hub.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("case", "repo_id", "token", "message"),
    [
        ("no token", "alice/x", None, "no Hugging Face token: run `hf auth login` or set HF_TOKEN="),
        ("invalid token", "alice/x", "hf_expired", "the Hub rejected your Hugging Face token"),
        ("read-only token", "alice/x", "hf_readOnly", "cannot write to alice/x; create a token with write access"),
        ("no write scope", "alice/x", "hf_fineGrainedNoWrite", "cannot write to alice/x; create a token with write"),
        ("bad repo id", "alice/bad--name", TOKEN, "is not a valid Hub repo id"),
        ("no owner", "spam-tiny", TOKEN, "has no owner; use OWNER/NAME"),
        ("someone else's repo", "bob/taken", TOKEN, "repo bob/taken belongs to bob; you are alice (orgs: acme)"),
        ("someone else's namespace", "bob/new", TOKEN, "belongs to bob; you are alice"),
    ],
)
def test_push_errors_are_one_line_with_exit_2(
    run_dir: Path, hub: FakeHub, tmp_path: Path, case: str, repo_id: str, token: str | None, message: str
) -> None:
    proc = push_cli(run_dir, hub, tmp_path, "--repo-id", repo_id, token=token)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert hub.commits == [] and set(hub.repos) == {"bob/taken"}
    if case in ("no token", "bad repo id", "no owner"):
        assert hub.requests == []  # refused before any network call
    assert token is None or token not in proc.stdout + proc.stderr


def test_push_offline_mode_is_one_line_with_exit_2(run_dir: Path, hub: FakeHub, tmp_path: Path) -> None:
    proc = push_cli(run_dir, hub, tmp_path, "--repo-id", "alice/x", HF_HUB_OFFLINE="1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in proc.stderr and "--dry-run" in proc.stderr
    assert hub.requests == []


def test_push_without_network_is_one_line_with_exit_2(run_dir: Path, tmp_path: Path) -> None:
    with closed_port() as endpoint:
        env = cli_env(tmp_path / "hf_home", endpoint=endpoint, token=TOKEN)
        proc = run_cli(["push", str(run_dir), "--repo-id", "alice/x"], env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"cannot reach the Hub at {endpoint}" in proc.stderr and "HF_ENDPOINT" in proc.stderr


def test_push_merged_needs_an_adapter(run_dir: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "hf_home")
    proc = run_cli(["push", str(run_dir), "--repo-id", "alice/x", "--merged", "--dry-run", str(tmp_path / "out")], env)
    assert proc.returncode == 2 and "not an adapter; --merged is for LoRA/QLoRA" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_push_refuses_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes").mkdir()
    assert main(["push", str(tmp_path / "notes"), "--repo-id", "alice/x", "--dry-run", str(tmp_path / "out")]) == 2
    assert "neither a run dir (with model/) nor a model dir" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# In-process pieces


def test_push_folder_twice_to_an_existing_repo(run_dir: Path, hub: FakeHub, online: None, tmp_path: Path) -> None:
    folder = push.stage_upload(run_dir / "model", tmp_path / "upload")  # a model dir inside a run dir: same
    assert (folder / "metrics.json").is_file() and (folder / "plots").is_dir()
    for message in ("one", "two"):
        url = push.push_folder(
            folder,
            "alice/again",
            token=TOKEN,
            private=None,
            revision="main",
            commit_message=message,
            endpoint=hub.endpoint,
        )
        assert url.startswith(f"{hub.endpoint}/alice/again/commit/")
    assert [c.summary for c in hub.commits] == ["one", "two"]  # create_repo's 409 "exists" was accepted
    assert [r.path for r in hub.requests].count("/api/repos/create") == 2


IN_PROCESS = {"token": TOKEN, "private": True, "revision": None, "commit_message": "m"}


def test_push_rejected_card_metadata_is_one_line(run_dir: Path, online: None, tmp_path: Path) -> None:
    hub = FakeHub(ACCOUNTS, card_errors=['"license" must be one of [apache-2.0, mit, ...]', '"tags" must be a list'])
    ep = hub.start().endpoint
    try:
        folder = push.stage_upload(run_dir, tmp_path / "upload")
        with pytest.raises(PushError) as err:
            push.push_folder(folder, "alice/card", **IN_PROCESS, endpoint=ep)
    finally:
        hub.stop()
    message = str(err.value)
    assert "\n" not in message and message.startswith("the Hub rejected the model card's metadata (README.md)")
    assert '"license" must be one of' in message and '"tags" must be a list' in message
    assert hub.commits == [] and not hub.unhandled


def test_push_stage_upload_never_overwrites(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PushError, match="not an empty directory"):
        push.stage_upload(run_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(PushError, match="inside"):
        push.stage_upload(run_dir, run_dir / "model" / "upload")
    assert not (run_dir / "model" / "upload").exists()
    assert push.stage_upload(run_dir, tmp_path / "new") == tmp_path / "new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_push_resolve_token_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = tmp_path / "token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(store))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(PushError, match="no Hugging Face token"):
        push.resolve_token()
    store.write_text("hf_fromStore")
    assert push.resolve_token() == "hf_fromStore"
    monkeypatch.setenv("HF_TOKEN", "hf_fromEnv")
    assert push.resolve_token() == "hf_fromEnv"
    assert push.resolve_token("hf_explicit") == "hf_explicit"


@pytest.mark.parametrize("repo_id", ["alice/spam-gpt2", "acme-org/spam_tune.v2"])
def test_push_check_repo_id_accepts(repo_id: str) -> None:
    push.check_repo_id(repo_id)


BAD_REPO_IDS = ["spam", "a/b/c", "alice/bad..name", "alice/-x", "alice/x.git", "alice/" + "x" * 97]


@pytest.mark.parametrize("repo_id", BAD_REPO_IDS)
def test_push_check_repo_id_rejects(repo_id: str) -> None:
    with pytest.raises(PushError, match="--repo-id"):
        push.check_repo_id(repo_id)


# ---------------------------------------------------------------------------------------------
# Config: hub.push_at_end


def test_hub_push_at_end_needs_a_repo_id() -> None:
    with pytest.raises(ConfigError, match=r"hub\.push_at_end=true needs hub\.repo_id"):
        load_config(None, ["hub.push_at_end=true"])
    cfg = load_config(None, ["hub.push_at_end=true", "hub.repo_id=alice/spam-gpt2"])
    assert cfg.hub.push_at_end and cfg.hub.repo_id == "alice/spam-gpt2"
    assert load_config(None, []).hub.push_at_end is False


@pytest.mark.parametrize("repo_id", ["spam-gpt2", "alice/bad--name"])
def test_hub_repo_id_is_checked_in_the_config(repo_id: str) -> None:
    with pytest.raises(ConfigError, match=r"hub\.repo_id"):
        load_config(None, [f"hub.repo_id={repo_id}"])


def test_push_refuses_an_adapter_whose_base_is_not_on_the_hub(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_export import _train

    run = _train(tmp_path, "lora.yaml", **{"adapter.target_modules": "[c_attn]"})  # random-init base
    capsys.readouterr()  # training's log lines
    assert main(["push", str(run), "--repo-id", "alice/x", "--dry-run", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not on the Hub (random init); push it with --merged" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["push", str(run), "--repo-id", "alice/x", "--merged", "--dry-run", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "README.md").is_file()
