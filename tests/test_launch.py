"""The CPU multi-process relaunch used under `accelerate launch --num_processes N --cpu`."""

from pipeline.launch import (
    accelerate_defaulted_threads,
    cpu_threads_per_process,
    num_processes_from_launcher,
    single_process_cpu_launch,
)


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
