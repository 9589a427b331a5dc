"""Download the UCI SMS Spam Collection: mirrors, checksum, atomic cache, progress bar.

Nothing reaches the cache before its SHA-256 matches ``data.sha256``, so a truncated archive, an HTML
error page or a tampered file is never read as data.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.config import DataConfig
from pipeline.errors import DataError, one_line
from pipeline.fileio import write_atomic

logger = logging.getLogger(__name__)

UCI_MEMBER = "SMSSpamCollection"
"""Name of the data file inside the UCI zip, and of the cached copy under ``data.cache_dir``."""
_CHUNK = 1 << 16


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_uci(
    cfg: DataConfig,
    *,
    progress: bool = True,
    urlopen: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Return the cached, checksum-verified UCI ``SMSSpamCollection`` file, downloading it if needed.

    ``urlopen`` is injectable so tests can serve an in-memory zip instead of touching the network.
    """
    target = Path(cfg.cache_dir).expanduser() / UCI_MEMBER
    expected = cfg.sha256.strip().lower()
    if target.is_file():
        if _sha256(target.read_bytes()) == expected:
            return target
        logger.warning("cached %s does not match data.sha256; downloading it again", target)

    failures: list[str] = []
    mismatch = False
    for url in dict.fromkeys((cfg.url, cfg.mirror_url)):  # dedupe: a user may set both to one URL
        try:
            content = _extract_member(_download(url, cfg.download_timeout, progress, urlopen))
        except (OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError, ValueError) as err:
            # OSError covers URLError/HTTPError/timeouts; the rest are truncated or wrong payloads.
            failures.append(f"{url} ({one_line(err)})")
            logger.warning("download from %s failed: %s", url, one_line(err))
            continue
        digest = _sha256(content)
        if digest != expected:
            mismatch = True
            failures.append(f"{url} (sha256 {digest} != data.sha256 {expected})")
            continue
        try:
            write_atomic(target, content)
        except OSError as err:
            raise DataError(
                f"cannot write the downloaded data to {target} ({one_line(err)}); "
                "set data.cache_dir=DIR to a writable directory"
            ) from None
        logger.info("downloaded the SMS Spam Collection from %s to %s", url, target)
        return target

    fix = "no network? download it yourself and pass data.source=file data.path=FILE"
    if mismatch:
        fix += " (if the file changed upstream on purpose, set data.sha256 to its new checksum)"
    raise DataError(
        f"could not get a verified copy of the SMS Spam Collection from {'; nor from '.join(failures)}; {fix}"
    )


def _download(url: str, timeout: float, progress: bool, urlopen: Callable[..., Any]) -> bytes:
    # The zip is ~200 kB, so it is held in memory: nothing touches the disk before it is verified.
    with urlopen(url, timeout=timeout) as resp:
        headers = getattr(resp, "headers", None)
        length = headers.get("Content-Length") if headers is not None else None
        total = int(length) if length and str(length).isdigit() else None
        buf = io.BytesIO()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="SMS Spam Collection",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                buf.write(chunk)
                bar.update(len(chunk))
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise ValueError(f"incomplete download: got {len(data)} of {total} bytes")
    return data


def _extract_member(payload: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.read(UCI_MEMBER)  # KeyError if the zip lacks it
