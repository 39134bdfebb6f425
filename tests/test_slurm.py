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

import pytest

from conftest import ROOT
from test_multiworker import SETS
from test_resume import assert_same_weights

SCRIPT = Path(__file__).with_name("slurm-local.sh")
BIGMODEL = [sys.executable, "-m", "bigmodel_cli"]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root (slurmd runs the tasks as their user)")
    r = subprocess.run(
        ["bash", "-c", f'source {SCRIPT} >&2 && echo "$SLURM_CONF"'],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode or not r.stdout.strip():
        pytest.skip(f"no local Slurm: {(r.stderr or r.stdout).strip()[-300:]}")
    env = {
        **os.environ,
        "SLURM_CONF": r.stdout.strip().splitlines()[-1],
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
    }
    for k in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[k]  # a test run inside a Slurm job must not pass that job's variables on
    return env


def srun(env: dict, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["srun", "-N1", "-n2", "--kill-on-bad-exit=1", *BIGMODEL, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


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
    assert sorted((exp / "runs").iterdir()) == sorted(
        [single, multi]
    )  # the other task wrote no run folder
    meta = json.loads((multi / "meta.json").read_text())
    assert meta["strategy"]["workers"] == 2 and "Slurm step" in meta["strategy"]["reason"]
    assert "worker 1 of 2 (Slurm step): done" in p.stderr
    assert_same_weights(multi / "model.keras", single / "model.keras", rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_srun_streamed_table_matches_one_process(tmp_path, cli, slurm):
    from test_streaming import make_table

    sets = [
        a
        for s in ["train.epochs=2", "data.features=[f0,f1,f2,f3]", "train.optimizer=sgd"]
        for a in ("--set", s)
    ]
    exp = make_table(tmp_path, rows=1500)
    r = cli("train", exp, *sets)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    p = srun(slurm, "train", str(exp), *sets)
    assert p.returncode == 0, p.stderr
    assert (
        "replicas 2" in p.stderr and "streaming" in p.stderr
    )  # both tasks ran every step on their own partitions
    multi = [r for r in (exp / "runs").iterdir() if r != single][0]
    assert_same_weights(multi / "model.keras", single / "model.keras", rtol=1e-4, atol=1e-4)


def _wait_job(env: dict, job: str, timeout: float = 400) -> str:
    t0 = time.time()
    while time.time() - t0 < timeout:
        q = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True
        )
        if not q.stdout.strip():
            return "gone"
        time.sleep(0.5)
    raise AssertionError(f"slurm job {job} still queued after {timeout}s")


def _sbatch(env: dict, script: Path) -> str:
    p = subprocess.run(
        ["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


@pytest.mark.slow
def test_scancel_mid_epoch_then_resume_finishes_the_run(make_exp, slurm, tmp_path):
    """sbatch, scancel while an epoch runs (Slurm sends SIGTERM, then
    SIGKILL), sbatch again with --resume."""
    exp = make_exp("regression")
    epochs = 40
    sets = [
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.steps_per_execution=1",
        "--set",
        "train.early_stopping=null",
    ]
    cmd = " ".join([*BIGMODEL, "train", str(exp), *sets])
    first = tmp_path / "first.sh"
    first.write_text(
        f"#!/bin/bash\n#SBATCH -N1 -n2 -o {tmp_path}/first-%j.out\ncd {ROOT}\nsrun {cmd}\n"
    )
    job = _sbatch(slurm, first)
    t0 = time.time()
    run = None
    while time.time() - t0 < 300:
        runs = list((exp / "runs").glob("*/history.csv")) if (exp / "runs").is_dir() else []
        if runs and len(list(csv.DictReader(open(runs[0])))) >= 2:
            run = runs[0].parent
            break
        time.sleep(0.2)
    assert run is not None, (
        (tmp_path / f"first-{job}.out").read_text()
        if (tmp_path / f"first-{job}.out").is_file()
        else "no output"
    )
    subprocess.run(["scancel", job], env=slurm, check=True)
    _wait_job(slurm, job)
    done = [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))]
    assert 2 <= len(done) < epochs and not (run / "model.keras").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["sessions"][-1]["status"] == "interrupted", meta["sessions"]
    second = tmp_path / "second.sh"
    second.write_text(
        f"#!/bin/bash\n#SBATCH -N1 -n2 -o {tmp_path}/second-%j.out\ncd {ROOT}\nsrun "
        f"{' '.join([*BIGMODEL, 'train', str(run), '--resume'])}\n"
    )
    job2 = _sbatch(slurm, second)
    _wait_job(slurm, job2)
    out = (tmp_path / f"second-{job2}.out").read_text()
    assert (run / "model.keras").is_file(), out
    assert [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))] == list(
        range(1, epochs + 1)
    ), out
    meta = json.loads((run / "meta.json").read_text())
    assert [s["status"] for s in meta["sessions"]] == ["interrupted", "completed"]
    assert meta["strategy"]["workers"] == 2


def test_submit_dry_run_prints_the_script(make_exp, cli):
    exp = make_exp("regression")
    r = cli(
        "submit",
        "slurm",
        exp,
        "--nodes",
        "2",
        "--tasks-per-node",
        "4",
        "--gpus-per-node",
        "4",
        "--time",
        "01:00:00",
        "--partition",
        "gpu",
        "--set",
        "train.epochs=3",
        "--dry-run",
    )
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    for want in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=01:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@120",
    ):
        assert want in lines, want
    assert any(
        "srun" in line and "train" in line and "--set train.epochs=3" in line for line in lines
    )
    assert any("--resume" in line for line in lines) and any(
        "scontrol requeue" in line for line in lines
    )
    assert not (exp / "slurm").exists()  # a dry run writes nothing
    bad = cli("submit", "slurm", exp, "--time", "90 minutes", "--dry-run")
    assert bad.code == 2 and "HH:MM:SS" in bad.err
    bad = cli("submit", "slurm", exp, "--set", "train.epochs=-1", "--dry-run")
    assert bad.code == 2 and "epochs" in bad.err  # the config is checked before anything is queued


def test_runs_shows_a_queued_job_and_a_requeued_run(make_exp, cli, monkeypatch, tmp_path):
    from bigmodel_cli.commands import submit

    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=1")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    meta = json.loads((run / "meta.json").read_text())
    meta["sessions"][-1].update(status="interrupted", slurm_job="41")
    (run / "meta.json").write_text(json.dumps(meta))
    (exp / "slurm").mkdir()
    for job in ("41", "42"):
        (exp / "slurm" / f"{job}.json").write_text(
            json.dumps({"job_id": job, "submitted": "2026-12-02T03:00:00+00:00"})
        )
    (exp / "slurm" / "41.run").write_text(str(run))
    monkeypatch.setattr(submit, "job_states", lambda ids: {"41": "pending", "42": "pending"})
    r = cli("runs", exp, "--json")
    rows = json.loads(r.out)["runs"]
    assert [(x["name"], x["status"], x["job"]["state"]) for x in rows] == [
        (run.name, "requeued", "pending"),
        ("slurm job 42", "pending", "pending"),
    ]
    r = cli("runs", exp)
    assert "slurm 41 pending" in r.out and "slurm job 42" in r.out


@pytest.mark.slow
def test_submitted_job_requeued_mid_run_resumes_its_run(make_exp, slurm):
    """bigmodel submit slurm; scontrol requeue while it trains (what the time-limit
    signal and a preemption do); the requeued job resumes the same run to the end."""
    exp = make_exp("regression")
    epochs = 30
    p = subprocess.run(
        [
            *BIGMODEL,
            "submit",
            "slurm",
            str(exp),
            "--tasks-per-node",
            "2",
            "--set",
            f"train.epochs={epochs}",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.steps_per_execution=1",
            "--set",
            "train.early_stopping=null",
        ],
        env=slurm,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip()
    assert (exp / "slurm" / "train-1.sbatch").is_file() and (
        exp / "slurm" / f"{job}.json"
    ).is_file()
    t0 = time.time()
    while time.time() - t0 < 300:
        hist = list((exp / "runs").glob("*/history.csv")) if (exp / "runs").is_dir() else []
        if hist and len(list(csv.DictReader(open(hist[0])))) >= 2:
            break
        time.sleep(0.2)
    else:
        raise AssertionError((exp / "slurm" / f"{job}.out").read_text())
    run = hist[0].parent
    assert (exp / "slurm" / f"{job}.run").read_text().strip() == str(run.resolve())
    subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
    # wait for the job to be pending again, then let it start at once (Slurm holds a requeued job ~2
    # min)
    while True:
        q = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], env=slurm, capture_output=True, text=True
        ).stdout.strip()
        if q == "PENDING":
            break
        assert time.time() - t0 < 400, q
        time.sleep(0.3)
    rows = json.loads(
        subprocess.run(
            [*BIGMODEL, "runs", str(exp), "--json"],
            env=slurm,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
    )["runs"]
    assert [(r["status"], r["job"]["state"]) for r in rows] == [("requeued", "pending")]
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm, check=True)
    _wait_job(slurm, job)
    out = (exp / "slurm" / f"{job}.out").read_text()
    assert "resuming after epoch" in out, out
    assert [int(h["epoch"]) for h in csv.DictReader(open(run / "history.csv"))] == list(
        range(1, epochs + 1)
    ), out
    meta = json.loads((run / "meta.json").read_text())
    assert [(s["status"], s["slurm_job"]) for s in meta["sessions"]] == [
        ("interrupted", job),
        ("completed", job),
    ]
    assert list((exp / "runs").iterdir()) == [run]
