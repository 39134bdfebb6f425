"""Multi-worker training with local workers (TF_CONFIG on loopback), on CPU."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_resume import weights

# 354 rows / global batch 6 = 59 full batches: no partial batch, so one process and
# two workers see exactly the same global batches.
SETS = ["--set", "data.validation=null", "--set", "train.batch_size=6", "--set", "train.epochs=3"]


def test_two_workers_match_one_process(make_exp, cli):
    exp = make_exp("regression")
    r = cli("train", exp, *SETS)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--workers", "2", *SETS], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    runs = sorted((exp / "runs").iterdir())
    assert len(runs) == 2, runs  # the chief wrote one run folder; the other worker nothing
    multi = [r for r in runs if r != single][0]
    assert "MultiWorkerMirroredStrategy" in p.stderr and "replicas 2" in p.stderr
    hist = list(csv.DictReader(open(multi / "history.csv")))
    assert [int(h["epoch"]) for h in hist] == [1, 2, 3]
    losses = [float(h["loss"]) for h in hist]
    assert losses[-1] < losses[0]
    for a, b in zip(weights(multi / "model.keras"), weights(single / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_killing_a_worker_stops_all_with_a_message(make_exp):
    psutil = pytest.importorskip("psutil")
    exp = make_exp("regression")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.Popen([sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--workers", "2", "--set", "train.epochs=100000", "--set", "train.steps_per_execution=1"], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    t0 = time.time()
    while not ((exp / "runs").exists() and any((r / "history.csv").exists() for r in (exp / "runs").iterdir())):
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
