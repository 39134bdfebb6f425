"""Multi-worker training under a real Slurm (slurm-wlm's slurmctld + slurmd on this machine).

tests/slurm-local.sh starts a one-node Slurm (root, auth/none, the node's CPUs),
installing Debian's slurm-wlm when it is missing. Not root, or no package: skipped
with the reason. The tasks are real `srun` tasks with the environment Slurm gives
them; nothing here sets a SLURM_ variable by hand.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_multiworker import SETS
from test_resume import weights

SCRIPT = Path(__file__).with_name("slurm-local.sh")
BIGMODEL = [sys.executable, "-m", "bigmodel_cli"]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (slurmd runs the tasks as their user)")
    r = subprocess.run(["bash", "-c", f"source {SCRIPT} >&2 && echo \"$SLURM_CONF\""], capture_output=True, text=True, timeout=900)
    if r.returncode or not r.stdout.strip():
        pytest.skip(f"no local Slurm: {(r.stderr or r.stdout).strip()[-300:]}")
    env = {**os.environ, "SLURM_CONF": r.stdout.strip().splitlines()[-1], "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    for k in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[k]  # a test run inside a Slurm job must not pass that job's variables on
    return env


def srun(env: dict, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(["srun", "-N1", "-n2", "--kill-on-bad-exit=1", *BIGMODEL, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_srun_two_tasks_train_one_run_that_matches_one_process(make_exp, cli, slurm):
    exp = make_exp("regression")
    r = cli("train", exp, *SETS)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    p = srun(slurm, "train", str(exp), *SETS, "--json")
    assert p.returncode == 0, p.stderr
    assert "nvidia-smi" not in p.stderr
    doc = json.loads(p.stdout)  # only the chief writes stdout: one JSON document
    multi = Path(doc["run_dir"])
    assert sorted((exp / "runs").iterdir()) == sorted([single, multi])  # the other task wrote no run folder
    meta = json.loads((multi / "meta.json").read_text())
    assert meta["strategy"]["workers"] == 2 and "Slurm step" in meta["strategy"]["reason"]
    assert "worker 1 of 2 (Slurm step): done" in p.stderr
    for a, b in zip(weights(multi / "model.keras"), weights(single / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_srun_streamed_table_matches_one_process(tmp_path, cli, slurm):
    from test_streaming import make_table

    sets = [a for s in ["train.epochs=2", "data.features=[f0,f1,f2,f3]", "train.optimizer=sgd"] for a in ("--set", s)]
    exp = make_table(tmp_path, rows=1500)
    r = cli("train", exp, *sets)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    p = srun(slurm, "train", str(exp), *sets)
    assert p.returncode == 0, p.stderr
    assert "replicas 2" in p.stderr and "streaming" in p.stderr  # both tasks ran every step on their own partitions
    multi = [r for r in (exp / "runs").iterdir() if r != single][0]
    for a, b in zip(weights(multi / "model.keras"), weights(single / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _wait_job(env: dict, job: str, timeout: float = 400) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        q = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
        if not q.stdout.strip():
            return "gone"
        time.sleep(0.5)
    raise AssertionError(f"slurm job {job} still queued after {timeout}s")


def _sbatch(env: dict, script: Path) -> str:
    p = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


@pytest.mark.slow
def test_scancel_mid_epoch_then_resume_finishes_the_run(make_exp, slurm, tmp_path):
    """sbatch, scancel while an epoch runs (Slurm sends SIGTERM, then SIGKILL), sbatch again with --resume."""
    exp = make_exp("regression")
    epochs = 40
    sets = ["--set", f"train.epochs={epochs}", "--set", "train.batch_size=2", "--set", "train.steps_per_execution=1", "--set", "train.early_stopping=null"]
    cmd = " ".join([*BIGMODEL, "train", str(exp), *sets])
    first = tmp_path / "first.sh"
    first.write_text(f"#!/bin/bash\n#SBATCH -N1 -n2 -o {tmp_path}/first-%j.out\ncd {ROOT}\nsrun {cmd}\n")
    job = _sbatch(slurm, first)
    t0 = time.time()
    run = None
    while time.time() - t0 < 300:
        runs = list((exp / "runs").glob("*/history.csv")) if (exp / "runs").is_dir() else []
        if runs and len(list(csv.DictReader(open(runs[0])))) >= 2:
            run = runs[0].parent
            break
        time.sleep(0.2)
    assert run is not None, (tmp_path / f"first-{job}.out").read_text() if (tmp_path / f"first-{job}.out").is_file() else "no output"
    subprocess.run(["scancel", job], env=slurm, check=True)
    _wait_job(slurm, job)
    done = [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))]
    assert 2 <= len(done) < epochs and not (run / "model.keras").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["sessions"][-1]["status"] == "interrupted", meta["sessions"]
    second = tmp_path / "second.sh"
    second.write_text(f"#!/bin/bash\n#SBATCH -N1 -n2 -o {tmp_path}/second-%j.out\ncd {ROOT}\nsrun {' '.join([*BIGMODEL, 'train', str(run), '--resume'])}\n")
    job2 = _sbatch(slurm, second)
    _wait_job(slurm, job2)
    out = (tmp_path / f"second-{job2}.out").read_text()
    assert (run / "model.keras").is_file(), out
    assert [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))] == list(range(1, epochs + 1)), out
    meta = json.loads((run / "meta.json").read_text())
    assert [s["status"] for s in meta["sessions"]] == ["interrupted", "completed"]
    assert meta["strategy"]["workers"] == 2
