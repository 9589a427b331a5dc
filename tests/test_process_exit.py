"""``pipeline.commands.process_exit.finish``: the quick exit of the command-line entry points loses nothing."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_finish_flushes_runs_exit_handlers_waits_for_threads_and_keeps_the_code(tmp_path: Path):
    marker = tmp_path / "atexit.txt"
    script = textwrap.dedent(
        f"""
        import atexit, logging, sys, threading, time
        from pathlib import Path
        from pipeline.commands.process_exit import finish

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
        atexit.register(lambda: Path({str(marker)!r}).write_text("ran"))
        done = []
        worker = threading.Thread(target=lambda: (time.sleep(0.2), done.append(1), print("thread done")))
        worker.start()
        print("buffered line", end="")  # no newline: stays in the buffer of a pipe until flushed
        logging.getLogger("x").info("logged line")
        finish(3)
        print("never printed")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 3
    assert proc.stdout == "buffered linethread done\n"  # the thread was waited for; nothing after finish ran
    assert "logged line" in proc.stderr
    assert marker.read_text() == "ran"


def test_the_cli_script_exits_with_mains_code():
    # `spam-tune` (= python -m pipeline.cli) ends through `finish`; an error's code and line still come out.
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "--config", "configs/nope.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr
