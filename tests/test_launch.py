"""The CPU multi-process relaunch used under `accelerate launch --num_processes N --cpu`."""

from pipeline.launch import num_processes_from_launcher, single_process_cpu_launch


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
