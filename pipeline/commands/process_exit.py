"""End a command's process as soon as its work is written, without the interpreter's teardown.

A finished training run has imported ~4,500 modules (torch, transformers, datasets, ...). Python's normal
exit then destroys them one by one: 1.4-1.5 s on 2 CPU cores after ``import pipeline.commands.train`` alone (measured:
the time from the last line of a script to the shell getting its exit code), a tenth of a small run's
whole command. By the time a command returns its exit code every output has been written, renamed into
place and closed (``pipeline.fileio`` writes aside and renames), so nothing is lost by skipping that
teardown: we flush what Python would flush, run the ``atexit`` handlers (logging, coverage, libraries'
clean-ups), leave a distributed process group the documented way, and hand the code to ``os._exit``.

Only the command-line entry points call this (``train.py``, the ``spam-tune`` script); ``pipeline.cli.main``
returns its code as before, so tests and other Python callers keep their process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading


def finish(code: int) -> None:
    """Flush outputs, run exit handlers, then end the process with ``code`` (never returns)."""
    for thread in threading.enumerate():  # as Python's own exit does first: let non-daemon threads finish
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    torch = sys.modules.get("torch")  # only if the command imported it: this module must stay import-light
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # what torch asks for before a DDP worker exits
    # atexit handlers registered by libraries (and by coverage under test) run as at a normal exit, in
    # the same last-registered-first order. `_run_exitfuncs` is CPython's own hook for exactly this.
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing can reach it anyway
            stream.flush()
    os._exit(code)
