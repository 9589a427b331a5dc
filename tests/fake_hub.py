"""A small Hugging Face Hub look-alike on 127.0.0.1, for testing uploads with the real ``huggingface_hub`` client.

It answers just the routes ``huggingface_hub`` 2.4 calls for ``whoami``, ``create_repo``, ``repo_info``,
``create_branch`` and ``create_commit`` (with README.md metadata validation), and keeps what it is sent:

- every request (method, path, query, headers, body), so a test can check where the token travels;
- every commit (repo, branch, summary, and the committed paths with their bytes).

Accounts are keyed by token. Failures are state, as on the real Hub: an unknown token gets 401; a token whose
role is not ``write`` (``read``, or a ``fineGrained`` token without write scope) gets 403 on any write; a
namespace that is not the account's user or one of its orgs gets 403; a repo created twice gets 409; with
``card_errors`` the README.md metadata check answers 400 with those problems.

Every file is declared ``regular`` at preupload, so the client sends it base64 inside the commit and never
tries LFS or Xet storage (which this server does not implement: an ``lfsFile`` line gets a 400).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_REQUESTS = 500
"""After this many requests every answer is 503: a runaway client loop ends instead of spinning."""
SOCKET_TIMEOUT_S = 10.0
"""A connection idle this long is dropped, so a stuck client cannot hold a server thread forever."""


@dataclass(frozen=True)
class Account:
    name: str
    orgs: tuple[str, ...] = ()
    role: str = "write"
    """``write`` may push to its namespaces; ``read`` and ``fineGrained`` (no write scope here) get 403."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Commit:
    repo_id: str
    branch: str
    summary: str
    files: dict[str, bytes]
    oid: str


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})


class FakeHub:
    """State and routes; :meth:`start` serves it on a free port of 127.0.0.1, :meth:`stop` ends it."""

    def __init__(
        self, accounts: dict[str, Account], repos: dict[str, Repo] | None = None, card_errors: list[str] = ()
    ) -> None:
        self.accounts = accounts
        self.card_errors = list(card_errors)
        """Problems /api/validate-yaml reports for any README.md (empty: every card is valid)."""
        self.repos: dict[str, Repo] = dict(repos or {})
        self.requests: list[Request] = []
        self.commits: list[Commit] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the fake hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -----------------------------------------------------------------------------------------
    # Routes: (status, JSON body, extra headers)

    def handle(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > MAX_REQUESTS:
                return 503, {"error": "fake hub: too many requests"}, {}
            for method, pattern, route in ROUTES:
                match = re.fullmatch(pattern, request.path)
                if method == request.method and match:
                    account = self.accounts.get(_bearer(request.headers))
                    if account is None:
                        # The real Hub's answer to a bad token; huggingface_hub keys on this exact message.
                        message = "Invalid credentials in Authorization header"
                        return 401, {"error": message}, {"X-Error-Message": message}
                    return route(self, account, request, *(unquote(g) for g in match.groups()))
            self.unhandled.append(f"{request.method} {request.path}")
            return 404, {"error": f"fake hub does not implement {request.method} {request.path}"}, {}

    def whoami(self, account: Account, request: Request) -> tuple[int, Any, dict[str, str]]:
        return (
            200,
            {
                "type": "user",
                "name": account.name,
                "orgs": [{"type": "org", "name": org} for org in account.orgs],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": account.role}},
            },
            {},
        )

    def validate_yaml(self, account: Account, request: Request) -> tuple[int, Any, dict[str, str]]:
        errors = [{"message": message} for message in self.card_errors]
        return (400 if errors else 200), {"errors": errors, "warnings": []}, {}

    def create_repo(self, account: Account, request: Request) -> tuple[int, Any, dict[str, str]]:
        payload = json.loads(request.body or b"{}")
        owner = payload.get("organization") or account.name
        repo_id = f"{owner}/{payload['name']}"
        if not _can_write(account, owner):
            return 403, {"error": f"You don't have the rights to create a model under the namespace {owner}"}, {}
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}, {}
        self.repos[repo_id] = Repo(owner=owner, private=payload.get("visibility") == "private")
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}, {}

    def repo_info(self, account: Account, request: Request, repo_id: str, revision: str = "main"):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not _can_read(account, repo.owner)):
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        if revision not in repo.branches:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        return 200, {"id": repo_id, "private": repo.private, "sha": _oid(repo.branches[revision])}, {}

    def create_branch(self, account: Account, request: Request, repo_id: str, branch: str):
        repo, error = self._writable(account, repo_id)
        if error:
            return error
        if branch in repo.branches:
            return 409, {"error": "Reference already exists"}, {}
        start = json.loads(request.body or b"{}").get("startingPoint") or "main"
        repo.branches[branch] = dict(repo.branches[start])
        return 200, {}, {}

    def preupload(self, account: Account, request: Request, repo_id: str, revision: str):
        _, error = self._writable(account, repo_id, revision)
        if error:
            return error
        files = json.loads(request.body)["files"]
        return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}, {}

    def commit(self, account: Account, request: Request, repo_id: str, revision: str):
        repo, error = self._writable(account, repo_id, revision)
        if error:
            return error
        if "create_pr" in parse_qs(request.query):
            return 400, {"error": "fake hub does not implement pull requests"}, {}
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        header, files = lines[0]["value"], {}
        for line in lines[1:]:
            if line["key"] != "file" or line["value"].get("encoding") != "base64":
                return 400, {"error": f"fake hub accepts regular base64 files only, got {line['key']}"}, {}
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        repo.branches[revision].update(files)
        oid = _oid(repo.branches[revision])
        self.commits.append(Commit(repo_id, revision, header["summary"], files, oid))
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid}, {}

    def _writable(self, account: Account, repo_id: str, revision: str | None = None):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not _can_read(account, repo.owner)):
            return None, (404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if not _can_write(account, repo.owner):
            return None, (403, {"error": f"You don't have write access to {repo_id}"}, {})
        if revision is not None and revision not in repo.branches:
            return None, (404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
        return repo, None


REPO = r"/api/models/([^/]+/[^/]+)"
ROUTES = [
    ("GET", r"/api/whoami-v2", FakeHub.whoami),
    ("POST", r"/api/validate-yaml", FakeHub.validate_yaml),
    ("POST", r"/api/repos/create", FakeHub.create_repo),
    ("GET", REPO, FakeHub.repo_info),
    ("GET", REPO + r"/revision/([^/]+)", FakeHub.repo_info),
    ("POST", REPO + r"/branch/([^/]+)", FakeHub.create_branch),
    ("POST", REPO + r"/preupload/([^/]+)", FakeHub.preupload),
    ("POST", REPO + r"/commit/([^/]+)", FakeHub.commit),
]


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def _can_read(account: Account, owner: str) -> bool:
    return owner in (account.name, *account.orgs)


def _can_write(account: Account, owner: str) -> bool:
    return account.role == "write" and _can_read(account, owner)


def _oid(files: dict[str, bytes]) -> str:
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha1(files[path]).digest())
    return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    timeout = SOCKET_TIMEOUT_S

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, url.path, url.query, {k.lower(): v for k, v in self.headers.items()}, body)
        status, payload, headers = self.hub.handle(request)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the test reads hub.requests instead
        pass


# ---------------------------------------------------------------------------------------------
# Running the real CLI against it


ROOT = Path(__file__).resolve().parents[1]


def cli_env(hf_home: Path, *, endpoint: str | None = None, token: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a ``spam-tune`` subprocess: its own HF_HOME (no login store unless the test writes one)
    and the fake Hub as HF_ENDPOINT (huggingface_hub reads it at import, hence a subprocess); without an
    endpoint, offline mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env.update({"HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_DATASETS_OFFLINE": "1"})
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    else:
        env["HF_HUB_OFFLINE"] = "1"  # no fake hub to talk to: nothing may leave the machine
    env.update(extra)
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m pipeline.cli ARGS`` (what the ``spam-tune`` script runs) from the repo root."""
    command = [sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """An endpoint on 127.0.0.1 that refuses connections: the port stays bound (so nobody else takes it) but
    never listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
