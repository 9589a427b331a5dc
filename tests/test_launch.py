"""The CPU multi-process relaunch used under `accelerate launch --num_processes N --cpu`."""

import os
from pathlib import Path

from pipeline.launch import (
    accelerate_defaulted_threads,
    cpu_threads_per_process,
    first_to_report,
    launcher_tee_target,
    num_processes_from_launcher,
    single_process_cpu_launch,
)

LAUNCH = ["/usr/bin/python", "-m", "accelerate.commands.launch", "--config_file", "a.yaml", "train.py"]


def test_detects_accelerate_simple_cpu_launcher_with_several_processes():
    simple = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert single_process_cpu_launch(simple)
    assert not single_process_cpu_launch(simple | {"RANK": "0", "WORLD_SIZE": "2"})  # already a DDP worker
    assert not single_process_cpu_launch({"ACCELERATE_USE_CPU": "True"})  # --num_processes 1: no master addr
    assert not single_process_cpu_launch({"MASTER_ADDR": "127.0.0.1"})  # GPU launch


def test_reads_num_processes_from_the_launcher_command_line():
    base = ["/usr/bin/python", "/venv/bin/accelerate", "launch", "--config_file", "a.yaml"]
    assert num_processes_from_launcher([*base, "--num_processes", "2", "--cpu", "train.py", "--config", "x"]) == 2
    assert num_processes_from_launcher([*base, "--num_processes=3", "--cpu", "train.py"]) == 3
    module = ["/usr/bin/python", "-m", "accelerate.commands.launch", "--num_processes", "4", "--cpu", "train.py"]
    assert num_processes_from_launcher(module) == 4
    assert num_processes_from_launcher(["/usr/bin/python", "train.py"]) is None


def test_tells_accelerates_one_thread_default_from_a_users_choice():
    launcher = ["/usr/bin/python", "-m", "accelerate.commands.launch", "--config_file", "a.yaml", "train.py"]
    child = {"OMP_NUM_THREADS": "1"}
    assert accelerate_defaulted_threads(child, {}, launcher)  # accelerate exported 1: use the cores
    assert not accelerate_defaulted_threads(child, {"OMP_NUM_THREADS": "1"}, launcher)  # the user asked for 1
    chosen = [*launcher[:3], "--num_cpu_threads_per_process", "1", *launcher[3:]]
    assert not accelerate_defaulted_threads(child, {}, chosen)
    assert not accelerate_defaulted_threads(child, {}, ["/usr/bin/python", "train.py"])  # not under accelerate
    assert not accelerate_defaulted_threads({}, {}, launcher)


def test_cpu_threads_share_the_physical_cores_between_local_processes():
    one = cpu_threads_per_process(1)
    assert one >= 1 and cpu_threads_per_process(2) == max(1, one // 2)
    assert cpu_threads_per_process(10_000) == 1


def fake_proc(root: Path, pid: int, cmdline: list[str], fds: dict[int, str]) -> None:
    """A /proc/PID with a command line and fd links (a pipe shows as ``pipe:[INODE]``)."""
    (root / str(pid) / "fd").mkdir(parents=True)
    (root / str(pid) / "cmdline").write_bytes(b"\0".join(part.encode() for part in cmdline) + b"\0")
    for fd, target in fds.items():
        os.symlink(target, root / str(pid) / "fd" / str(fd))


def test_finds_the_launchers_stderr_when_the_launcher_copies_ours_through_a_pipe(tmp_path: Path):
    # accelerate >= 1.16: the child's stderr is a pipe whose read end the launcher holds; the launcher's own
    # stderr is the terminal.
    fake_proc(tmp_path, 10, LAUNCH, {0: "/dev/pts/0", 1: "/dev/pts/0", 2: "/dev/pts/0", 5: "pipe:[77]"})
    fake_proc(tmp_path, 11, ["/usr/bin/python", "train.py"], {1: "/dev/pts/0", 2: "pipe:[77]"})
    assert launcher_tee_target(pid=11, parent=10, proc=str(tmp_path)) == f"{tmp_path}/10/fd/2"


def test_leaves_stderr_alone_without_a_copying_launcher(tmp_path: Path):
    # accelerate <= 1.15: the child inherits the launcher's stderr (here itself a pipe, e.g. `2>&1 | tee`).
    fake_proc(tmp_path, 20, LAUNCH, {2: "pipe:[5]"})
    fake_proc(tmp_path, 21, ["/usr/bin/python", "train.py"], {2: "pipe:[5]"})
    assert launcher_tee_target(pid=21, parent=20, proc=str(tmp_path)) is None
    # A pipe read by someone else (`python train.py 2> >(cat)`), and a parent that is no accelerate launcher.
    fake_proc(tmp_path, 30, ["/bin/bash"], {2: "/dev/pts/0", 4: "pipe:[9]"})
    fake_proc(tmp_path, 31, ["/usr/bin/python", "train.py"], {2: "pipe:[9]"})
    assert launcher_tee_target(pid=31, parent=30, proc=str(tmp_path)) is None
    assert launcher_tee_target(pid=31, parent=999, proc=str(tmp_path)) is None  # the parent is gone


def test_the_first_failing_process_of_a_launch_prints_the_error(tmp_path: Path):
    assert first_to_report({}) and first_to_report({"WORLD_SIZE": "1"})  # one process: always
    several = {"WORLD_SIZE": "2"}
    assert first_to_report(several, marker_dir=str(tmp_path))
    assert not first_to_report(several, marker_dir=str(tmp_path))  # the other rank of the same launch
    assert first_to_report(several, marker_dir=str(tmp_path / "missing"))  # no marker possible: print anyway
