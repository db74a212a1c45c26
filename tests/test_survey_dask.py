"""Fan-out on Dask: N workers give the same bits as one process; a worker killed mid-run loses
nothing (its task runs again elsewhere); the SLURM config file becomes the right job script."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from _survey import assert_same_posterior, save, write_script

from bayessky.cli import main

distributed = pytest.importorskip("distributed")
N = 6


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An in-process run (no Dask) of 6 maps with per-map masks: the reference posteriors."""
    tmp = tmp_path_factory.mktemp("survey_dask")
    rng = np.random.default_rng(5)
    files = {"script": write_script(tmp), "data": save(tmp, "d.npy", rng.normal(1.0, 1.0, size=(N, 5, 5))),
             "mask": save(tmp, "m.npy", (rng.random((N, 5, 5)) > 0.3).astype(float))}
    ref = tmp / "serial"
    assert main(["run", files["script"], "--data", files["data"], "--mask", files["mask"], "--out", str(ref),
                 "--no-plots"]) == 0
    return tmp, files, ref


def _cmd(files, out, *extra):
    return ["run", files["script"], "--data", files["data"], "--mask", files["mask"], "--out", str(out),
            "--no-plots", *extra]


def test_two_workers_give_the_same_bits_as_one_process(reference):
    tmp, files, ref = reference
    out = tmp / "two"
    assert main(_cmd(files, out, "--workers", "2", "--block-size", "2")) == 0
    for i in range(N):
        assert_same_posterior(out / f"posterior_{i:03d}.nc", ref / f"posterior_{i:03d}.nc")
    assert json.loads((out / "run.json").read_text())["execution"]["workers"] == 2


def test_a_killed_worker_loses_no_map(reference):
    tmp, files, ref = reference
    from distributed import Client, LocalCluster

    # 1 s per block, blocks of one map: the kill lands while tasks run
    env = {"BAYESSKY_TEST_SLOW": "1.0", "OMP_NUM_THREADS": "1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env=env) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        out = tmp / "killed_worker"
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault(
            "rc", main(_cmd(files, out, "--scheduler", cluster.scheduler_address, "--block-size", "1"))))
        thread.start()
        t0 = time.monotonic()
        # wait until the tasks are running on the workers, then kill one of them
        while not client.processing() or not any(client.processing().values()):
            assert time.monotonic() - t0 < 60, "no task started"
            time.sleep(0.05)
        busy = next(w for w, tasks in client.processing().items() if tasks)
        os.kill(pids[busy], signal.SIGKILL)
        thread.join(timeout=180)
        assert not thread.is_alive()
    assert result["rc"] == 0
    for i in range(N):
        assert_same_posterior(out / f"posterior_{i:03d}.nc", ref / f"posterior_{i:03d}.nc")


SLURM_YAML = """
cores: 4
memory: 16GB
walltime: "02:00:00"
partition: cpu
account: astro42
jobs: 3
job_extra_directives: ["--qos=normal"]
job_script_prologue: ["source /opt/venv/bin/activate"]
"""


def test_slurm_config_becomes_the_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    from bayessky.survey import load_slurm_config

    path = tmp_path / "slurm.yaml"
    path.write_text(SLURM_YAML)
    config = load_slurm_config(path)
    assert config["jobs"] == 3
    with SLURMCluster(**config["kwargs"]) as cluster:
        script = cluster.job_script()
    # what sbatch must be asked for, written out from the YAML above by hand
    for line in ("#SBATCH -p cpu", "#SBATCH -A astro42", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=15G",
                 "#SBATCH -t 02:00:00", "#SBATCH --qos=normal", "source /opt/venv/bin/activate",
                 "export OMP_NUM_THREADS=1"):
        assert line in script, (line, script)
    # 4 cores, 4 processes: one single-threaded worker per core
    assert "--nworkers 4" in script and "--nthreads 1" in script, script


@pytest.mark.parametrize("text, match", [
    ("memory: 16GB\nwalltime: '01:00:00'\n", "missing required setting(s) ['cores']"),
    ("cores: 4\nmemory: 16GB\nwalltime: '01:00:00'\nnodes: 2\n", "unknown setting(s) ['nodes']"),
    ("cores: 4\nmemory: lots\nwalltime: '01:00:00'\n", "memory must be a size"),
    ("cores: 4\nmemory: 16GB\nwalltime: 2h\n", "walltime must be a time"),
    ("cores: 0\nmemory: 16GB\nwalltime: '01:00:00'\n", "cores must be a positive integer"),
    ("cores: 2\nprocesses: 4\nmemory: 16GB\nwalltime: '01:00:00'\n",
     "processes (4) must not exceed cores (2)"),
    ("cores: [4\n", "cannot parse"),
])
def test_slurm_config_errors_are_one_line_before_any_output(reference, tmp_path, capsys, text, match):
    _, files, _ = reference
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "o"
    capsys.readouterr()
    assert main(_cmd(files, out, "--cluster", "slurm", "--cluster-config", str(path))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cluster-config bad.yaml" in err[0] and match in err[0], err
    assert not out.exists()
