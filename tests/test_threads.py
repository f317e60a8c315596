"""The thread policy (threads.py): the cores a process may use (affinity mask, cgroup quota from fixture files,
hyperthread siblings), the user's variables respected, and the policy carried into child processes and run.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftorch import threads
from ftorch.errors import ConfigError
from ftorch.threads import Cores

from conftest import ROOT, run_cli

SRC = str(ROOT / "src")


def _sysfs(tmp_path: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        topology = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(text + "\n")
    return tmp_path / "cpu"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _without_policy() -> dict[str, str]:
    """This process's environment without the policy's variables (conftest applied it), to start a child from."""
    ours = {*threads.wanted_env(threads.decide({})), threads.MARK}
    return {**{k: v for k, v in os.environ.items() if k not in ours}, "PYTHONPATH": SRC}


def test_cpu_lists_in_the_kernels_format():
    assert threads.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert threads.parse_cpu_list("5") == {5}


def test_hyperthread_siblings_count_once_among_the_allowed_cpus(tmp_path):
    sysfs = _sysfs(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert threads.physical_cores({0, 1, 2, 3}, sysfs) == 2
    assert threads.physical_cores({0, 2}, sysfs) == 1  # two hyperthreads of one core
    assert threads.physical_cores({0, 1}, sysfs) == 2
    assert threads.physical_cores({0, 7}, sysfs) is None  # cpu7's topology unreadable: unknown, not a guess


def test_cgroup_v2_quota_is_the_tightest_on_the_path(tmp_path):
    proc = _write(tmp_path / "proc_cgroup", "0::/user.slice/job\n")
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "user.slice" / "cpu.max", "250000 100000\n")
    _write(root / "user.slice" / "job" / "cpu.max", "max 100000\n")
    assert threads.cgroup_quota(root, proc) == 2.5
    _write(root / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    assert threads.cgroup_quota(root, proc) == 1.5


def test_cgroup_v2_without_a_quota(tmp_path):
    proc = _write(tmp_path / "proc_cgroup", "0::/\n")
    _write(tmp_path / "cgroup" / "cpu.max", "max 100000\n")
    assert threads.cgroup_quota(tmp_path / "cgroup", proc) is None


def test_cgroup_v1_quota_under_cpu_cpuacct(tmp_path):
    proc = _write(tmp_path / "proc_cgroup", "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n")
    folder = tmp_path / "cgroup" / "cpu,cpuacct" / "docker" / "abc"
    _write(folder / "cpu.cfs_quota_us", "300000\n")
    _write(folder / "cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "cgroup" / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")  # the root: unlimited
    _write(tmp_path / "cgroup" / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_quota(tmp_path / "cgroup", proc) == 3.0
    _write(folder / "cpu.cfs_quota_us", "-1\n")
    assert threads.cgroup_quota(tmp_path / "cgroup", proc) is None


def test_the_quota_caps_the_physical_cores_rounded_down():
    assert Cores(logical=8, physical=4, quota=None).usable == 4
    assert Cores(logical=8, physical=4, quota=2.5).usable == 2
    assert Cores(logical=8, physical=4, quota=0.5).usable == 1
    assert Cores(logical=8, physical=None, quota=None).usable == 8  # topology unknown: logical CPUs


def test_detected_policy_and_the_share_of_test_workers():
    cores = Cores(logical=4, physical=4, quota=None)
    policy = threads.decide({}, cores=cores)
    assert (policy.threads, policy.source, policy.interop) == (4, "detected", 2)
    assert threads.decide({}, cores=cores, workers=2).threads == 2
    assert threads.decide({}, cores=cores, workers=8).threads == 1


def test_the_affinity_mask_limits_the_threads():
    """A real process pinned to one CPU decides one thread, whatever the machine has."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); from ftorch import threads; "
            "p = threads.decide({}); print(p.threads, threads.detect().logical)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert done.stdout.split() == ["1", "1"]


def test_the_users_variables_are_kept_and_recorded():
    environ = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    policy = threads.apply(environ)
    assert (policy.threads, policy.source) == (3, "OMP_NUM_THREADS")
    assert environ["OMP_NUM_THREADS"] == "3" and environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert policy.kept_env == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert environ["GOMP_SPINCOUNT"] == "0" and environ["MKL_NUM_THREADS"] == "3"
    assert policy.set_env["TOKENIZERS_PARALLELISM"] == "false"


def test_ftorch_threads_overrides_the_detection_and_off_sets_nothing():
    environ = {"FTORCH_THREADS": "5"}
    policy = threads.apply(environ)
    assert (policy.threads, policy.source) == (5, "FTORCH_THREADS")
    assert environ["OMP_NUM_THREADS"] == "5" and environ["OMP_WAIT_POLICY"] == "PASSIVE"
    untouched = {"FTORCH_THREADS": "off"}
    assert threads.apply(untouched).source == "off" and untouched == {"FTORCH_THREADS": "off"}


def test_a_bad_ftorch_threads_is_a_user_error(monkeypatch):
    with pytest.raises(ConfigError, match="FTORCH_THREADS"):
        threads.decide({"FTORCH_THREADS": "0"})
    monkeypatch.setenv("FTORCH_THREADS", "many")
    result = run_cli("eval", "no-such-run")
    assert result.returncode == 2, result.stderr
    assert "FTORCH_THREADS='many' is not a number of threads" in result.stderr and "Traceback" not in result.stderr


def test_a_child_process_inherits_the_policy_before_torch_loads():
    """The parent applies FTORCH_THREADS=1 to its environment; a child started with it runs torch on one
    thread (the default here would be one per CPU), waits passively, and knows the policy as inherited."""
    environ = {**_without_policy(), "FTORCH_THREADS": "1"}
    threads.apply(environ)
    environ.pop("FTORCH_THREADS")  # only what apply() wrote travels: the child must not re-decide from it
    code = ("import json, os, torch; from ftorch import threads; p = threads.decide(); "
            "print(json.dumps([torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'], p.source, p.threads]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ)
    assert json.loads(done.stdout) == [1, "PASSIVE", "inherited", 1]


def test_torch_follows_ftorch_threads_even_beside_another_omp_num_threads():
    code = ("import torch; from ftorch import threads; before = torch.get_num_threads(); "
            "p = threads.configure_torch(); print(before, torch.get_num_threads(), p.source)")
    environ = {**_without_policy(), "OMP_NUM_THREADS": "2", "FTORCH_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environ)
    assert done.stdout.split() == ["2", "1", "FTORCH_THREADS"]


def test_run_json_records_the_policy(tmp_path):
    from ftorch.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    recorded = json.loads(run.run_json.read_text())["threads"]
    assert recorded == threads.current().to_json() and recorded["threads"] >= 1 and recorded["source"]


def test_an_omp_num_threads_list_or_nonsense_is_kept_and_read_as_openmp_reads_it():
    nested = {"OMP_NUM_THREADS": "3,1"}
    policy = threads.apply(nested)
    assert (policy.threads, policy.source) == (3, "OMP_NUM_THREADS") and nested["OMP_NUM_THREADS"] == "3,1"
    odd = {"OMP_NUM_THREADS": "lots"}
    policy = threads.apply(odd)
    assert policy.source == "detected" and odd["OMP_NUM_THREADS"] == "lots" and policy.kept_env["OMP_NUM_THREADS"]
