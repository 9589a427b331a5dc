"""Make ``accelerate launch --num_processes N --cpu train.py`` really run N DDP processes.

accelerate's ``--cpu`` path uses its "simple" launcher, which starts ONE process and relies on
``mpirun`` (an MPI install plus a hostfile) for more; without MPI the ``--num_processes`` value is
silently ignored. It does export ``MASTER_ADDR``/``MASTER_PORT`` (only when N > 1), so the case is
recognisable: no ``RANK``/``WORLD_SIZE`` yet, CPU requested, a master address set. Then we read N
from the launcher's own command line and start the N workers with torch's elastic launcher
(what ``torchrun`` and accelerate's multi-GPU path use), over the gloo backend.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from pipeline.errors import SpamTuneError


def single_process_cpu_launch(env: Mapping[str, str]) -> bool:
    """True inside accelerate's simple CPU launcher started with --num_processes > 1."""
    return (
        env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
        and "MASTER_ADDR" in env
        and "RANK" not in env
        and "WORLD_SIZE" not in env
    )


def num_processes_from_launcher(cmdline: Sequence[str]) -> int | None:
    """``--num_processes N`` (or ``--num_processes=N``) from an ``accelerate launch`` command line."""
    # `accelerate launch ...`, `python -m accelerate.commands.launch ...` or `accelerate-launch ...`
    starts = [i for i, part in enumerate(cmdline) if part == "launch" or part.endswith(("commands.launch", "-launch"))]
    if not starts:
        return None
    from accelerate.commands.launch import launch_command_parser

    rest = list(cmdline[starts[0] + 1 :])
    args, _ = launch_command_parser().parse_known_args(rest)
    return args.num_processes


def maybe_relaunch_cpu_ddp(script_args: Sequence[str], env: Mapping[str, str] | None = None) -> int | None:
    """Start the DDP workers if accelerate started us alone; return their exit code, or None to go on."""
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
    try:
        run(launcher_args)
    except ChildFailedError:
        return 1
    return 0
