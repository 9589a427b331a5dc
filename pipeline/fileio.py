"""Atomic file and directory writes: readers see the old version or the whole new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, not on every write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(target: Path, data: bytes | str) -> None:
    """Write via a temp file in the same directory + ``os.replace``; a failure leaves no temp file behind."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def publish_dir(out: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory with ``build(tmp)`` in a hidden sibling of ``out``, then swap it in whole.

    Readers see the old ``out`` or the complete new one, never a half-written one: a crash (or kill) while
    building leaves only a hidden ``.<name>.*.tmp`` sibling, which no reader mistakes for a finished folder.
    An existing ``out`` is moved aside first and removed last (and put back if the swap fails).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old: Path | None = None
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private; outputs are shared like any directory
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not out.exists():
            os.replace(old / "previous", out)  # put the earlier output back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out
