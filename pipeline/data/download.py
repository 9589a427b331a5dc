"""Download the UCI SMS Spam Collection: mirrors, bounded retries, checksum, atomic cache, progress bar.

Nothing reaches the cache before its SHA-256 matches ``data.sha256``, so a truncated archive, an HTML
error page or a tampered file is never read as data. A failure that may pass (a dropped connection, a timeout,
a 5xx answer) is retried a few times with a growing pause; a wrong payload (HTML, not a zip, wrong checksum)
moves on to the mirror at once, since asking again would bring the same bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
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


class WrongPayload(ValueError):
    """The server answered, but not with the zip (an HTML page, a broken archive): retrying will not help."""


def fetch_uci(
    cfg: DataConfig,
    *,
    progress: bool = True,
    urlopen: Callable[..., Any] = urllib.request.urlopen,
    attempts: int = 3,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Return the cached, checksum-verified UCI ``SMSSpamCollection`` file, downloading it if needed.

    Each URL (``data.url``, then ``data.mirror_url``) gets up to ``attempts`` tries for failures that may pass,
    pausing ``backoff``, 2 x ``backoff``, ... seconds in between. ``urlopen`` and ``sleep`` are injectable so
    tests can serve files from memory or 127.0.0.1 without waiting.
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
            content = _download_with_retries(url, cfg.download_timeout, progress, urlopen, attempts, backoff, sleep)
        except (OSError, http.client.HTTPException, ValueError) as err:
            # OSError covers URLError/HTTPError/timeouts; ValueError truncated or wrong payloads.
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

    fix = (
        f"no network, or both sources down? download {cfg.url} yourself, unzip it and pass "
        f"data.source=file data.path=FILE (the {UCI_MEMBER} file inside)"
    )
    if mismatch:
        fix += " (if the file changed upstream on purpose, set data.sha256 to its new checksum)"
    raise DataError(
        f"could not get a verified copy of the SMS Spam Collection from {'; nor from '.join(failures)}; {fix}"
    )


def _download_with_retries(
    url: str,
    timeout: float,
    progress: bool,
    urlopen: Callable[..., Any],
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> bytes:
    """The data file from the zip at ``url``; failures that may pass are retried, the last one is raised."""
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            return _extract_member(_download(url, timeout, progress, urlopen))
        except (OSError, http.client.HTTPException, ValueError) as err:
            if attempt >= attempts or not _may_pass(err):
                raise
            pause = backoff * 2 ** (attempt - 1)
            logger.warning("download from %s failed (%s); trying again in %.1f s", url, one_line(err), pause)
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _may_pass(err: Exception) -> bool:
    """A dropped connection, a timeout or an overloaded server: worth asking again. A wrong answer is not."""
    if isinstance(err, WrongPayload):
        return False
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return isinstance(err, (OSError, http.client.HTTPException, ValueError))


def _download(url: str, timeout: float, progress: bool, urlopen: Callable[..., Any]) -> bytes:
    # The zip is ~200 kB, so it is held in memory: nothing touches the disk before it is verified.
    with urlopen(url, timeout=timeout) as resp:
        headers = getattr(resp, "headers", None)
        length = headers.get("Content-Length") if headers is not None else None
        total = int(length) if length and str(length).isascii() and str(length).isdigit() else None
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
    content_type = headers.get("Content-Type", "") if headers is not None else ""
    if "html" in str(content_type).lower() or data.lstrip()[:1] == b"<":
        raise WrongPayload("got an HTML page instead of the zip (an error, login or proxy page?)")
    return data


def _extract_member(payload: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return archive.read(UCI_MEMBER)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:  # broken directory, bad CRC, cut-off deflate data
        raise WrongPayload(f"not a valid zip archive ({one_line(err)}); truncated at the source?") from None
    except KeyError:
        raise WrongPayload(f"the zip holds no {UCI_MEMBER} file") from None
