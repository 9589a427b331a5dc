"""The start-up facts of environment.json: ``start_up`` to a hundredth of a second, and whether imports recompile."""

import os
import subprocess
import sys
import time

from pipeline.commands.timing import Stages, imports_recompile


def test_process_age_lies_within_what_the_parent_saw():
    script = (
        "import time; time.sleep(1.0); "
        "from pipeline.commands.timing import seconds_since_process_start as s; print(s())"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    elapsed = time.monotonic() - started
    age = float(out.stdout)
    # At least the child's own sleep, at most the parent's wait (+ /proc's 10 ms tick): a boot-time-based age
    # (psutil's create_time, whole-second boot time) could read up to 1 s more than the process lived.
    assert 1.0 <= age <= elapsed + 0.02, (age, elapsed)


def test_stages_add_up_per_name():
    stages = Stages()
    for _ in range(2):
        with stages("tokenize"):
            time.sleep(0.01)
    assert stages.to_dict()["tokenize"] >= 0.02


def _recompiles_json(env_changes: dict[str, str | None]) -> bool:
    """``imports_recompile(json)`` in a fresh interpreter with these environment changes (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in env_changes} | {
        k: v for k, v in env_changes.items() if v is not None
    }
    script = "import json; from pipeline.commands.timing import imports_recompile; print(imports_recompile(json))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    return out.stdout.strip() == "True"


def test_imports_recompile_when_no_bytecode_may_be_read_or_written(tmp_path):
    # An empty bytecode folder Python may not write to: every module is compiled again, in every process.
    assert _recompiles_json({"PYTHONPYCACHEPREFIX": str(tmp_path / "empty"), "PYTHONDONTWRITEBYTECODE": "1"})
    # The same empty folder where Python may write: the import leaves the .pyc behind for the next process.
    assert not _recompiles_json({"PYTHONPYCACHEPREFIX": str(tmp_path / "writable"), "PYTHONDONTWRITEBYTECODE": None})
    assert list((tmp_path / "writable").rglob("json/__init__.*.pyc"))  # the prefix mirrors the source's path


def test_modules_without_a_source_file_count_as_compiled():
    assert not imports_recompile(sys)  # built into the interpreter
