"""Push a model folder to the Hugging Face Hub: check the repo id and the token, create the repo, one commit.

The upload goes through ``huggingface_hub`` only (``HfApi``: whoami, create_repo, create_branch, create_commit);
every failure a user can fix becomes a one-line :class:`PushError` that names the fix. The token is passed
to ``huggingface_hub`` and nowhere else: it is never logged, printed or written to a file.

``stage_upload`` writes the exact folder that is uploaded (``--dry-run`` stops there). Today it copies the
model dir plus the run's metrics, report and plots; the export writer (issue 7) replaces it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2  # the transport huggingface_hub 2.x uses; its TransportError is how "no network" surfaces
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from pipeline.errors import SpamTuneError

log = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload spam-tune model"
TOKENS_URL = "https://huggingface.co/settings/tokens"
RUN_ARTIFACTS = ("metrics.json", "report.md", "plots")
"""Files of a run dir that travel with its model: the numbers, the report and the plots it links to."""


class PushError(SpamTuneError):
    """The model could not be pushed to the Hub (no token, bad repo id, no access, no network)."""


# ---------------------------------------------------------------------------------------------
# Checks that need no network


def resolve_token(explicit: str | None = None) -> str:
    """The token to push with: ``explicit``, else ``HF_TOKEN``, else the ``hf auth login`` store."""
    token = explicit or get_token()
    if not token:
        raise PushError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN=... (a token with write access, from "
            f"{TOKENS_URL})"
        )
    return token


def check_repo_id(repo_id: str) -> None:
    """``owner/name`` as the Hub spells it; checked before any network call."""
    example = "e.g. --repo-id alice/spam-gpt2"
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise PushError(
            f"--repo-id {repo_id!r} is not a valid Hub repo id; use OWNER/NAME with letters, digits, '-', '_' "
            f"or '.', no '--' or '..', at most 96 characters ({example})"
        ) from None
    if repo_id.count("/") != 1:
        raise PushError(f"--repo-id {repo_id!r} has no owner; use OWNER/NAME, your user or org name first ({example})")


def check_namespace(repo_id: str, me: dict[str, Any]) -> None:
    """Refuse a repo in someone else's namespace before creating anything (whoami is the source of truth)."""
    owner = repo_id.split("/")[0]
    user = me.get("name", "?")
    orgs = [org.get("name") for org in me.get("orgs") or [] if org.get("name")]
    if owner not in (user, *orgs):
        raise PushError(
            f"repo {repo_id} belongs to {owner}; you are {user} (orgs: {', '.join(orgs) or 'none'}); "
            f"push to your own namespace, e.g. --repo-id {user}/{repo_id.split('/')[1]}"
        )
    # A classic read token can never write; say so before create_repo answers with a bare 403.
    role = (me.get("auth") or {}).get("accessToken", {}).get("role")
    if role == "read":
        raise PushError(_no_write_access(repo_id))


def _no_write_access(repo_id: str) -> str:
    return (
        f"your Hugging Face token cannot write to {repo_id}; create a token with write access at {TOKENS_URL}, "
        "then run `hf auth login` or set HF_TOKEN=..."
    )


# ---------------------------------------------------------------------------------------------
# The upload


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    token: str,
    private: bool | None,
    revision: str | None,
    commit_message: str,
    endpoint: str | None = None,
) -> str:
    """Upload every file under ``folder`` to ``repo_id`` in ONE commit; returns the commit URL.

    ``private`` applies when the repo is created (``None``: the Hub's default); an existing repo keeps its
    visibility. A ``revision`` other than ``main`` is created as a branch from ``main`` if needed.
    """
    check_repo_id(repo_id)
    operations = folder_operations(Path(folder))
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision if revision and revision != "main" else None
    with hub_errors(api.endpoint, repo_id, branch):
        check_namespace(repo_id, api.whoami())
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        # create_commit, not upload_folder: with hf_xet installed, upload_folder streams a folder in as many
        # commits as it sees fit; a model must land as exactly one commit (all files, or none).
        info = api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=branch)
    log.info("pushed %d files to %s (%s)", len(operations), repo_id, branch or "main")
    return info.commit_url


def folder_operations(folder: Path) -> list[CommitOperationAdd]:
    """One add operation per file under ``folder``, paths relative to it (the repo layout)."""
    if not folder.is_dir():
        raise PushError(f"{folder} is not a directory; pass the folder written by the export (or --dry-run)")
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    if not files:
        raise PushError(f"{folder} holds no files; nothing to push")
    return [CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]


@contextlib.contextmanager
def hub_errors(endpoint: str, repo_id: str, branch: str | None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line PushErrors naming the fix (by type and status, not text)."""
    try:
        yield
    except OfflineModeIsEnabled:
        raise PushError(
            "offline mode is on (HF_HUB_OFFLINE=1), so nothing can be pushed; unset HF_HUB_OFFLINE to push, "
            "or use --dry-run OUT_DIR to write the folder without uploading"
        ) from None
    except httpx2.TransportError as err:
        raise PushError(
            f"cannot reach the Hub at {endpoint} ({type(err).__name__}); check your network or HF_ENDPOINT"
        ) from None
    except HfHubHTTPError as err:
        raise PushError(_http_error_message(err, endpoint, repo_id, branch)) from None
    except ValueError as err:
        # create_commit checks README.md's metadata with the Hub first and turns the Hub's 400 into a
        # ValueError (cause: the HTTP error) listing the problems; anything else is a bug and keeps its traceback.
        if not isinstance(err.__cause__, HfHubHTTPError):
            raise
        problems = "; ".join(line.lstrip("- ") for line in str(err).splitlines()[1:] if line.strip())
        raise PushError(
            f"the Hub rejected the model card's metadata (README.md): {problems or err}; fix the card's YAML header"
        ) from None


def _http_error_message(err: HfHubHTTPError, endpoint: str, repo_id: str, branch: str | None) -> str:
    status = err.response.status_code if err.response is not None else None
    if status == 401:
        return (
            "the Hub rejected your Hugging Face token (invalid or expired); run `hf auth login` "
            f"or set HF_TOKEN=... to a valid token from {TOKENS_URL}"
        )
    if status == 403:
        return _no_write_access(repo_id)
    if status == 404:
        where = f"branch {branch} of {repo_id}" if branch else repo_id
        return f"the Hub at {endpoint} has no {where} after creating it; check --repo-id and --revision and retry"
    detail = (err.server_message or "").strip().splitlines()
    reason = f": {detail[0]}" if detail else ""
    return f"the Hub at {endpoint} answered HTTP {status}{reason}; retry later, or check --repo-id and --revision"


# ---------------------------------------------------------------------------------------------
# Staging: the exact folder to upload. REPLACED by the export writer (issue 7) when it lands.


def model_and_run_dirs(model_or_run_dir: Path) -> tuple[Path, Path | None]:
    """A model dir (``config.json`` or ``adapter_config.json``) and the run dir around it, if any."""
    given = Path(model_or_run_dir).expanduser()

    def is_model_dir(path: Path) -> bool:
        return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()

    if is_model_dir(given):
        model_dir = given
    elif is_model_dir(given / "model"):
        model_dir = given / "model"
    else:
        raise PushError(
            f"{given} is neither a run dir (with model/) nor a model dir (with config.json or adapter_config.json); "
            "pass the output.dir of a finished training run or its model dir"
        )
    run_dir = model_dir.parent if (model_dir.parent / "config.yaml").is_file() else None
    return model_dir, run_dir


def stage_upload(model_or_run_dir: Path, out_dir: Path, *, merged: bool = False) -> Path:
    """Write the folder to upload into ``out_dir`` (new or empty): the model (adapter merged into its base
    when ``merged``) plus, from a run dir, metrics.json, report.md and plots/. Written to a temp dir, then
    renamed, so ``out_dir`` never holds half a folder."""
    model_dir, run_dir = model_and_run_dirs(model_or_run_dir)
    if merged and not (model_dir / "adapter_config.json").is_file():
        raise PushError(f"{model_dir} holds a full model, not an adapter; --merged is for LoRA/QLoRA runs, drop it")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PushError(f"{out_dir} exists and is not an empty directory; choose a new folder for the upload")
    copied = [model_dir, *([run_dir / "plots"] if run_dir else [])]
    if any(out_dir.resolve().is_relative_to(source.resolve()) for source in copied):
        raise PushError(f"{out_dir} is inside {model_dir} (or its plots), which it copies; choose a folder outside")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        staged = Path(tmp) / "upload"
        if merged:
            from pipeline.adapters import merge_adapter  # the merge hook; needs torch/peft, so imported here

            merge_adapter(model_dir, staged)
        else:
            shutil.copytree(model_dir, staged)
        for name in RUN_ARTIFACTS if run_dir else ():
            source = run_dir / name
            if source.is_dir():
                shutil.copytree(source, staged / name)
            elif source.is_file():
                shutil.copy2(source, staged / name)
        if out_dir.exists():
            out_dir.rmdir()
        staged.replace(out_dir)
    return out_dir


def push_model(
    model_or_run_dir: Path,
    repo_id: str,
    *,
    private: bool | None,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    merged: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """``spam-tune push`` and ``hub.push_at_end``: stage the folder in a temp dir and push it; the commit URL."""
    check_repo_id(repo_id)
    token = resolve_token(token)  # before staging: a missing token should not cost a merge first
    with tempfile.TemporaryDirectory(prefix="spam-tune-push-") as tmp:
        folder = stage_upload(model_or_run_dir, Path(tmp) / "upload", merged=merged)
        return push_folder(
            folder,
            repo_id,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message,
            endpoint=endpoint,
        )
