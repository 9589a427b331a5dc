"""``seconds_since_process_start``: the ``start_up`` stage of environment.json, to a hundredth of a second."""

import subprocess
import sys
import time

from pipeline.timing import Stages


def test_process_age_lies_within_what_the_parent_saw():
    script = "import time; time.sleep(1.0); from pipeline.timing import seconds_since_process_start as s; print(s())"
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
