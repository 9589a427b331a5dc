"""Errors under the README's main command, ``accelerate launch --quiet ... train.py``: one line, printed once.

Without ``--quiet`` accelerate's simple launcher (one process, or ``--cpu``) raises its own ``CalledProcessError``
after the script failed, a traceback of the launcher itself; with ``--quiet`` it only exits 1. With 2 CPU
processes train.py checks the config before it starts the workers, and a worker error (bad data file, found by
every rank) is printed by rank 0 only. Both launches run side by side.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.reliability.conftest import ACCELERATE, Running, train_command


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    out = tmp_path_factory.mktemp("launch-errors")
    one = Running.start(train_command(["training.learnin_rate=1", f"output.dir={out / 'one'}"], launcher=ACCELERATE))
    missing = out / "no-such-file.tsv"
    two_cpu = [*ACCELERATE, "--num_processes", "2", "--cpu"]
    two = Running.start(
        train_command(["data.source=file", f"data.path={missing}", f"output.dir={out / 'two'}"], launcher=two_cpu)
    )
    bad_config = Running.start(train_command(["training.fp17=true", f"output.dir={out / 'three'}"], launcher=two_cpu))
    return SimpleNamespace(
        one=(one.finish(), one.text),
        two=(two.finish(), two.text),
        bad_config=(bad_config.finish(), bad_config.text),
        out=out,
    )


def assert_one_error_line(text: str, fragment: str) -> None:
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], text[-3000:]
    assert "Traceback" not in text and "CalledProcessError" not in text and "ChildFailedError" not in text


def test_accelerate_launch_one_process_config_error_is_one_line(launched):
    code, text = launched.one
    assert code == 1  # accelerate's launcher reports every failure of its script as 1 (python train.py: 2)
    assert_one_error_line(text, "did you mean 'training.learning_rate'")
    assert not (launched.out / "one").exists()


def test_accelerate_launch_two_cpu_processes_data_error_is_printed_once(launched):
    code, text = launched.two
    assert code == 1
    assert_one_error_line(text, "does not exist")
    assert not (launched.out / "two").exists()


def test_two_cpu_processes_config_error_stops_before_the_workers_start(launched):
    code, text = launched.bad_config
    assert code == 1
    assert_one_error_line(text, "unknown config key 'training.fp17'")
    assert "rank" not in text.lower()  # no worker was started, none reported anything
