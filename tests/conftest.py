"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real UCI SMS Spam Collection lives beside the clone (../shared/data), never inside the repo.
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "SMSSpamCollection"


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """Path of the real UCI ``SMSSpamCollection`` file; skips the test when it is not there."""
    if not REAL_DATA.is_file():
        pytest.skip(f"real data not found at {REAL_DATA} (expected ../shared/data beside the clone)")
    return REAL_DATA
