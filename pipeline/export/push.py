"""Push a model folder to the Hugging Face Hub: check the repo id and the token, create the repo, one commit.

The upload goes through ``huggingface_hub`` only (``HfApi``: whoami, create_repo, create_branch, create_commit);
every failure a user can fix becomes a one-line :class:`PushError` that names the fix. The token is passed
to ``huggingface_hub`` and nowhere else: it is never logged, printed or written to a file.

``stage_upload`` writes the exact folder that is uploaded (``--dry-run`` stops there): a copy of the model folder
the export stage wrote (weights or adapter + head, tokenizer, metadata, card, metrics, report, plots), or with
``--merged`` the folder ``spam-tune merge`` writes.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2  # the transport huggingface_hub 2.x uses; its TransportError is how "no network" surfaces
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from pipeline.config import hub_repo_id_problem
from pipeline.errors import PushError
from pipeline.export.folder import BASE_DIR, copy_folder, is_adapter_folder, read_folder_metadata, resolve_model_dir

log = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload spam-tune model"
TOKENS_URL = "https://huggingface.co/settings/tokens"


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
    problem = hub_repo_id_problem(repo_id)
    if problem:
        raise PushError(
            f"--repo-id {repo_id!r} {problem}; use OWNER/NAME (your user or org first) with letters, digits, "
            "'-', '_' or '.', no '--' or '..', at most 96 characters (e.g. --repo-id alice/spam-gpt2)"
        )


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
# Staging: the exact folder to upload


def stage_upload(model_or_run_dir: Path, out_dir: Path, *, merged: bool = False) -> Path:
    """Write the folder to upload into ``out_dir`` (new or empty): a copy of the exported model folder, or with
    ``merged`` its adapter merged into the base. Written aside and renamed, so ``out_dir`` is never half a folder."""
    model_dir = resolve_model_dir(model_or_run_dir)
    adapter = is_adapter_folder(model_dir)
    if merged and not adapter:
        raise PushError(f"{model_dir} holds a full model, not an adapter; --merged is for LoRA/QLoRA runs, drop it")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PushError(f"{out_dir} exists and is not an empty directory; choose a new folder for the upload")
    if out_dir.resolve().is_relative_to(model_dir.resolve()):
        raise PushError(f"{out_dir} is inside {model_dir}, which it copies; choose a folder outside")
    if merged:
        from pipeline.export.merge import merge_folder  # needs torch and peft: only for --merged

        return merge_folder(model_dir, out_dir)
    if adapter:
        _check_adapter_base_on_hub(model_dir)
    return copy_folder(model_dir, out_dir)


def _hub_name(name: str) -> bool:
    """A Hub model id; unlike a push target it may lack an owner (``gpt2``)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_adapter_base_on_hub(model_dir: Path) -> None:
    """An adapter on the Hub is only usable if its base is there too: refuse local or random-init bases."""
    base = read_folder_metadata(model_dir).base_model
    if (model_dir / BASE_DIR).is_dir() or not base or Path(base).expanduser().exists() or not _hub_name(base):
        raise PushError(
            f"the adapter in {model_dir} sits on a base that is not on the Hub ({base or 'random init'}); "
            "push it with --merged (a standalone model), or train from a Hub model"
        )


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
