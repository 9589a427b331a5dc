"""What ``train.py`` does about the launcher that started it (accelerate's, torch's elastic one).

Make ``accelerate launch --num_processes N --cpu train.py`` really run N DDP processes.

accelerate's ``--cpu`` path uses its "simple" launcher, which starts ONE process and relies on
``mpirun`` (an MPI install plus a hostfile) for more; without MPI the ``--num_processes`` value is
silently ignored. It does export ``MASTER_ADDR``/``MASTER_PORT`` (only when N > 1), so the case is
recognisable: no ``RANK``/``WORLD_SIZE`` yet, CPU requested, a master address set. Then we read N
from the launcher's own command line and start the N workers with torch's elastic launcher
(what ``torchrun`` and accelerate's multi-GPU path use), over the gloo backend.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from pipeline.errors import SpamTuneError

PROC = "/proc"


def single_process_cpu_launch(env: Mapping[str, str]) -> bool:
    """True inside accelerate's simple CPU launcher started with --num_processes > 1."""
    return (
        env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
        and "MASTER_ADDR" in env
        and "RANK" not in env
        and "WORLD_SIZE" not in env
    )


def launch_arguments(cmdline: Sequence[str]) -> list[str] | None:
    """What follows ``launch`` in an ``accelerate launch`` command line (its options, the script, its arguments)."""
    # `accelerate launch ...`, `python -m accelerate.commands.launch ...` or `accelerate-launch ...`
    starts = [i for i, part in enumerate(cmdline) if part == "launch" or part.endswith(("commands.launch", "-launch"))]
    return list(cmdline[starts[0] + 1 :]) if starts else None


def num_processes_from_launcher(cmdline: Sequence[str]) -> int | None:
    """``--num_processes N`` (or ``--num_processes=N``) from an ``accelerate launch`` command line."""
    rest = launch_arguments(cmdline)
    if rest is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    args, _ = launch_command_parser().parse_known_args(rest)
    return args.num_processes


def launcher_command_line(max_depth: int = 3) -> list[str] | None:
    """The arguments of the ``accelerate launch`` that started this process (a parent, or a DDP worker's
    grandparent), or None when there is none: what a user would type again to rerun this run."""
    import psutil

    try:
        process = psutil.Process().parent()
        for _ in range(max_depth):
            if process is None:
                return None
            found = launch_arguments(process.cmdline())
            if found is not None:
                return found
            process = process.parent()
    except psutil.Error:  # a parent exited meanwhile, or its command line is not ours to read
        return None
    return None


def maybe_relaunch_cpu_ddp(
    script_args: Sequence[str], env: Mapping[str, str] | None = None, preflight: Callable[[], object] | None = None
) -> int | None:
    """Start the DDP workers if accelerate started us alone; return their exit code, or None to go on.

    ``preflight()`` runs first when workers are about to start (e.g. the config check): what it raises stops the
    launch before any worker exists.
    """
    env = os.environ if env is None else env
    if not single_process_cpu_launch(env):
        return None
    import psutil

    n = num_processes_from_launcher(psutil.Process(os.getppid()).cmdline())
    if n is None:
        raise SpamTuneError(
            "started for several CPU processes but cannot tell how many; use "
            "`accelerate launch --multi_gpu --num_processes N train.py ...` (runs DDP on CPU when there is no GPU)"
        )
    if n <= 1:
        return None
    if preflight is not None:
        preflight()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    launcher_args = parse_args(
        [
            f"--nproc_per_node={n}",
            f"--master_addr={env['MASTER_ADDR']}",
            f"--master_port={env.get('MASTER_PORT', '29500')}",
            sys.argv[0],
            *script_args,
        ]
    )
    # The workers print their own one-line errors (the main rank only); the elastic agent would add a failure
    # summary and, on Ctrl-C, a "got signal" warning per worker. Its errors come back as exit codes instead.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(launcher_args)
    except ChildFailedError as err:
        _, failure = err.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode  # -15 (killed by SIGTERM): 143
    except SignalException as err:
        # Ctrl-C / SIGTERM reached this agent: it passed SIGTERM on to the workers (they stop at a step boundary
        # and save a checkpoint) and waited for them; exit as a shell would for that signal.
        return 128 + int(err.sigval)
    return 0


def stop_with_the_launcher(env: Mapping[str, str] | None = None) -> bool:
    """In a worker of torch's elastic launcher (our CPU relaunch, or ``--multi_gpu``): receive SIGTERM when the
    launcher dies, even by ``kill -9``. Returns whether it was set up.

    The elastic launcher starts each worker in its own session, so ``kill -9`` of the launcher's process group
    misses the workers: they would train on as orphans and finish the run. With the parent-death signal they
    stop as on any SIGTERM: at a step boundary, with a checkpoint. Linux only (``prctl``); elsewhere a no-op.
    """
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" not in env or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    launcher = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if os.getppid() != launcher:  # it died while we set this up: the signal will not come, so act now
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def accelerate_defaulted_threads(
    env: Mapping[str, str], launcher_env: Mapping[str, str], launcher: Sequence[str]
) -> bool:
    """True when ``OMP_NUM_THREADS`` is accelerate's default of 1, not the user's choice.

    ``accelerate launch`` without ``--cpu`` exports ``OMP_NUM_THREADS=1`` unless the user set it (or passed
    ``--num_cpu_threads_per_process``): a CPU run then computes on one core of many (the book split trained
    1.6x slower on 2 cores). The launcher's own environment and command line tell the two cases apart.
    """
    launched = any(part == "launch" or part.endswith(("commands.launch", "-launch")) for part in launcher)
    chosen = "OMP_NUM_THREADS" in launcher_env or any(p.startswith("--num_cpu_threads_per_process") for p in launcher)
    return launched and "OMP_NUM_THREADS" in env and not chosen


def cpu_threads_per_process(local_processes: int) -> int:
    """Physical cores this process may use, shared among the processes on this machine (accelerate's rule)."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or usable
    return max(1, min(usable, physical) // max(local_processes, 1))


def use_cpu_cores(env: Mapping[str, str] | None = None) -> int | None:
    """Undo accelerate's one-thread default for this process; returns the thread count set, or None."""
    env = os.environ if env is None else env
    import psutil

    try:
        parent = psutil.Process(os.getppid())
        launcher_env, launcher = parent.environ(), parent.cmdline()
    except (psutil.Error, OSError):  # the launcher is gone or not ours to read: leave the setting alone
        return None
    if not accelerate_defaulted_threads(env, launcher_env, launcher):
        return None
    import torch

    threads = cpu_threads_per_process(int(env.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    return threads


def _pipe_inode(link: str) -> str | None:
    """``pipe:[12345]`` (what /proc shows for a pipe end) -> ``12345``; None for anything else."""
    return link[len("pipe:[") : -1] if link.startswith("pipe:[") and link.endswith("]") else None


def launcher_tee_target(pid: int | None = None, parent: int | None = None, proc: str = PROC) -> str | None:
    """The launcher's own stderr when this process's stderr is a pipe that its parent, an ``accelerate launch``,
    reads and copies through (accelerate >= 1.16's simple launcher does that, to keep the last lines of a failed
    run); None otherwise (no launcher, or it passes stderr on unchanged).

    Linux only (read from /proc): elsewhere None, and stderr stays as it is.
    """
    pid = os.getpid() if pid is None else pid
    parent = os.getppid() if parent is None else parent
    try:
        ours = _pipe_inode(os.readlink(f"{proc}/{pid}/fd/2"))
        if ours is None or launch_arguments(_cmdline(parent, proc)) is None:
            return None
        theirs = {_pipe_inode(os.readlink(f"{proc}/{parent}/fd/{fd}")) for fd in os.listdir(f"{proc}/{parent}/fd")}
        target = os.readlink(f"{proc}/{parent}/fd/2")
    except OSError:  # no /proc, or the parent exited or is not ours to read
        return None
    if ours not in theirs or _pipe_inode(target) == ours:
        return None
    return f"{proc}/{parent}/fd/2"


def _cmdline(pid: int, proc: str) -> list[str]:
    with open(f"{proc}/{pid}/cmdline", "rb") as f:
        return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]


def write_past_the_launcher_tee(proc: str = PROC) -> bool:
    """Under a launcher that copies our stderr through a pipe, write stderr straight to where the launcher's goes.

    Why: the copy lives only as long as the launcher. After a ``kill -9`` of the launch, or once the launcher has
    exited on SIGTERM, that pipe has no reader, and the lines a stopped run prints last (``interrupted: ...; to
    resume, run: ...`` from the DDP workers, which outlive it by design) were lost; accelerate 1.15 passed stderr
    on unchanged, so they reached the terminal. Opening the launcher's stderr through /proc gives this process
    the same terminal, pipe or file (a file opened for appending, so that nothing is written over). Returns
    whether stderr was redirected.
    """
    target = launcher_tee_target(proc=proc)
    if target is None:
        return False
    import stat

    try:
        flags = os.O_WRONLY | (os.O_APPEND if stat.S_ISREG(os.stat(target).st_mode) else 0)
        fd = os.open(target, flags)
    except OSError:  # e.g. a terminal we may not open: keep the launcher's copy
        return False
    sys.stderr.flush()
    os.dup2(fd, 2)  # fd 2 itself, so that the workers started later inherit it too
    os.close(fd)
    return True


@functools.cache
def launch_id() -> str | None:
    """This process's launch: its launcher's pid and start time (so a later launch that reuses the pid differs),
    read once, while the launcher lives. A worker whose launcher is killed is adopted by another process (init),
    which must not pass for its launch: call this at start-up (``cmd_train`` does). None: no parent to read."""
    import psutil

    try:
        launcher = psutil.Process(os.getppid())
        return f"{launcher.pid}-{int(launcher.create_time() * 1000)}"
    except psutil.Error:
        return None


def first_to_report(env: Mapping[str, str] | None = None, marker_dir: str | None = None) -> bool:
    """Whether this process prints the run's one-line error: always in a one-process run; with several processes,
    the first of this machine's processes to fail (they all hit the same input, so one line says it).

    Not "rank 0 only": when another rank fails first, the launcher stops the rest (torch's elastic agent within
    0.1 s, then SIGTERM), and rank 0 was often stopped before it printed (1 launch in 3 showed no error line).
    The processes of one launch agree through a file created exclusively, named after their launch
    (:func:`launch_id`).
    """
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return True
    import tempfile

    launch = launch_id()
    if launch is None:  # nobody to agree with: better a line twice than none
        return True
    marker = os.path.join(marker_dir or tempfile.gettempdir(), f"spam-tune-error-{launch}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    except OSError:  # no writable temp dir: better a line twice than none
        return True
    return True
