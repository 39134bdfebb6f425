"""Multi-worker training with local workers (TF_CONFIG on loopback), on CPU."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from test_resume import assert_same_weights

# 354 rows / global batch 6 = 59 full batches: no partial batch, so one process and
# two workers see exactly the same global batches.
# float32: under mixed precision each replica rounds its partial gradient sums to 16
# bits, so N workers and one process differ by more than 1e-4 (tests/test_mirrored.py).
SETS = [
    "--set",
    "data.validation=null",
    "--set",
    "train.batch_size=6",
    "--set",
    "train.epochs=3",
    "--set",
    "train.precision=float32",
]


def single_vs_workers(make_exp, cli, workers: int, sets: list[str]):
    """Train once in this process and once with N local workers, same config:
    returns (single run, multi run, the launcher's stderr); the weights must agree."""
    exp = make_exp("regression")
    r = cli("train", exp, *sets)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--workers", str(workers), *sets],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    runs = sorted((exp / "runs").iterdir())
    assert len(runs) == 2, runs  # the chief wrote one run folder; the other workers nothing
    multi = [r for r in runs if r != single][0]
    assert_same_weights(multi / "model.keras", single / "model.keras", rtol=1e-4, atol=1e-4)
    return single, multi, p.stderr


# make test's time (10-12 s); test_vertex_style_chief_and_worker_processes and test_slurm's srun -n2
# check two workers against one process in it
@pytest.mark.slow
def test_two_workers_match_one_process(make_exp, cli):
    single, multi, err = single_vs_workers(make_exp, cli, 2, SETS)
    assert "MultiWorkerMirroredStrategy" in err and "replicas 2" in err
    hist = list(csv.DictReader(open(multi / "history.csv")))
    assert [int(h["epoch"]) for h in hist] == [1, 2, 3]
    losses = [float(h["loss"]) for h in hist]
    assert losses[-1] < losses[0]


# make test's time (18 s); test_survivor_of_a_dead_worker_exits_and_names_it keeps a worker's death
# in it
@pytest.mark.slow
def test_killing_a_worker_stops_all_with_a_message(make_exp):
    psutil = pytest.importorskip("psutil")
    exp = make_exp("regression")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bigmodel_cli",
            "train",
            str(exp),
            "--workers",
            "2",
            "--set",
            "train.epochs=100000",
            "--set",
            "train.steps_per_execution=1",
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    t0 = time.time()
    while not (
        (exp / "runs").exists()
        and any((r / "history.csv").exists() for r in (exp / "runs").iterdir())
    ):
        assert time.time() - t0 < 120 and p.poll() is None
        time.sleep(0.1)
    children = psutil.Process(p.pid).children()
    worker1 = [c for c in children if '"index": 1' in c.environ().get("TF_CONFIG", "")][0]
    worker1.send_signal(signal.SIGKILL)
    t1 = time.time()
    out, err = p.communicate(timeout=90)
    assert time.time() - t1 < 60
    assert p.returncode != 0 and "worker 1 of 2 failed" in err
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def _start_workers(exp, *sets):
    from bigmodel_cli.training.launch import tf_configs

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bigmodel_cli", "train", str(exp), *sets],
            env={**env, "TF_CONFIG": cfg},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for cfg in tf_configs(2)
    ]


def test_survivor_of_a_dead_worker_exits_and_names_it(make_exp):
    """A real cluster, no launcher: worker 1 dies, worker 0 stops with a clear line."""
    exp = make_exp("regression")
    chief, other = _start_workers(
        exp, "--set", "train.epochs=100000", "--set", "train.steps_per_execution=1"
    )
    t0 = time.time()
    while not (
        (exp / "runs").exists()
        and any((r / "history.csv").exists() for r in (exp / "runs").iterdir())
    ):
        assert time.time() - t0 < 120 and chief.poll() is None
        time.sleep(0.1)
    other.send_signal(signal.SIGKILL)
    t1 = time.time()
    out, err = chief.communicate(timeout=90)
    other.communicate()
    assert time.time() - t1 < 60
    assert (
        chief.returncode != 0
        and "worker 1 (127.0.0.1:" in err
        and "--resume" in err
        and "Traceback" not in err
    ), err


@pytest.mark.slow  # make test's time; tests/test_slurm.py resumes a two-worker run too (slow)
def test_multi_worker_run_resumes_and_extends(make_exp):
    exp = make_exp("regression")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    base = [sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--workers", "2"]
    p = subprocess.run(
        [*base, "--set", "train.epochs=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [*base, "--resume", "--set", "train.epochs=4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    assert "resuming after epoch 2" in p.stderr
    (run,) = list((exp / "runs").iterdir())
    assert [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))] == [1, 2, 3, 4]


@pytest.mark.slow  # the two-worker tests stay in make test; this one keeps it under its time budget
def test_three_workers_uneven_batch_match_one_process(make_exp, cli):
    """Global batch 59 over 3 workers is 20/20/19 rows: still the same global batches."""
    sets = [
        "--set",
        "data.validation=null",
        "--set",
        "train.batch_size=59",
        "--set",
        "train.epochs=3",
        "--set",
        "train.optimizer=adam",
        "--set",
        "train.precision=float32",
    ]
    _, _, err = single_vs_workers(make_exp, cli, 3, sets)
    assert "59 global / 20/20/19 per replica" in err


def test_vertex_style_chief_and_worker_processes(make_exp, cli):
    """TF_CONFIG as Vertex AI writes it: a chief task and a worker, with its extra
    keys (environment, job, task.trial). The chief writes the one run folder."""
    from bigmodel_cli.training.launch import free_ports

    exp = make_exp("regression")
    r = cli("train", exp, *SETS)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    chief, worker = (f"127.0.0.1:{p}" for p in free_ports(2))
    base = {
        "cluster": {"chief": [chief], "worker": [worker]},
        "environment": "cloud",
        "job": {"worker_pool_specs": [{"replica_count": 1}, {"replica_count": 1}]},
    }
    args = [sys.executable, "-m", "bigmodel_cli", "train", str(exp), *SETS, "--json"]
    procs = []
    for task in (
        {"type": "worker", "index": 0, "trial": ""},
        {"type": "chief", "index": 0, "trial": ""},
    ):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CONFIG": json.dumps({**base, "task": task}),
        }
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
        )
    (w_out, w_err), (c_out, c_err) = (p.communicate(timeout=300) for p in procs)
    assert [p.returncode for p in procs] == [0, 0], c_err + w_err
    assert (
        w_out == "" and "worker 0 of 2 (TF_CONFIG): done" in w_err
    )  # worker 0 is not the chief when there is one
    multi = Path(json.loads(c_out)["run_dir"])
    assert sorted((exp / "runs").iterdir()) == sorted([single, multi])
    assert_same_weights(multi / "model.keras", single / "model.keras", rtol=1e-4, atol=1e-4)
