"""bigmodel tune (Optuna study in DIR/tune/study.db), bigmodel runs, TensorBoard logs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_process

FAST = ["--set", "train.epochs=12"]  # the regression template's 60 epochs, cut for the tests


def _study_states(exp: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(exp / "tune" / "study.db") as db:
        return db.execute("select number, state from trials order by number").fetchall()


def test_tune_space_keys_and_values_are_checked(make_exp, cli):
    exp = make_exp("regression")
    r = cli("tune", exp, "--set", "tune.space={train.learnig_rate: {loguniform: [0.001, 0.1]}}")
    assert r.code == 2 and "train.learnig_rate" in r.err and "did you mean 'learning_rate'" in r.err
    r = cli("tune", exp, "--set", "tune.space={train.learning_rate: {loguniform: [0, 0.1]}}")
    assert r.code == 2 and "low > 0" in r.err
    r = cli("tune", exp, "--set", "tune.space={train.batch_size: {choice: [0, 16]}}")
    assert r.code == 2 and "tune.space.train.batch_size: the value 0 is refused" in r.err
    r = cli("tune", exp, "--set", "tune.space={train.learning_rate: {normal: [0, 1]}}")
    assert r.code == 2 and "loguniform" in r.err
    r = cli("tune", exp, "--set", "tune.metric=val_acuracy")
    assert r.code == 2 and "tune.metric 'val_acuracy' is not logged" in r.err
    r = cli("tune", exp, "--set", "tune=null")
    assert r.code == 2 and "no tune.space" in r.err and "loguniform" in r.err
    assert not (exp / "runs").exists()  # nothing ran


@pytest.mark.slow  # 15-30 s: in make test-slow, to keep make test under 10 minutes
def test_tune_kill_9_and_rerun_ends_with_exactly_n_finished_trials(make_exp):
    """The issue's goal: kill -9 during the study, rerun, exactly 8 finished
    trials; the killed one failed and replaced; none repeated; the best is at
    or below the template default's validation loss (trial 0)."""
    exp = make_exp("regression")
    env = {**os.environ, "BIGMODEL_INFERENCE_COPY": "wait"}
    p = subprocess.Popen(
        [sys.executable, "-m", "bigmodel_cli", "tune", str(exp), "--trials", "8", *FAST],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # kill it inside its third trial, after that trial's first epoch
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            hist = exp / "runs" / "regression-3" / "history.csv"
            if hist.is_file() and len(hist.read_text().splitlines()) >= 3:
                break
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.05)
        else:
            pytest.fail("the third trial never got going")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    assert "RUNNING" in {s for _, s in _study_states(exp)}, _study_states(exp)
    r = run_process("runs", exp, "--json")
    killed = [x for x in json.loads(r.out)["runs"] if x["name"] == "regression-3"][0]
    assert killed["status"] == "interrupted" and killed["trial"] == 2

    r = run_process(
        "tune",
        exp,
        "--trials",
        "8",
        *FAST,
        "--json",
        env={"BIGMODEL_INFERENCE_COPY": "wait"},
        timeout=600,
    )
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert "trial 2 was left running by a process that is gone" in r.err
    assert d["failed_stale"] == [2] and d["finished"] == 8
    states = [t["state"] for t in d["trials"]]
    assert states.count("fail") == 1 and states[2] == "fail"
    assert sum(s in ("complete", "pruned") for s in states) == 8 and "running" not in states
    assert [t["number"] for t in d["trials"]] == list(range(len(states)))
    dirs = [t["run_dir"] for t in d["trials"]]
    assert len(set(dirs)) == len(dirs)  # every trial its own run folder
    # no point drawn twice (the restart must not replay the sampler's sequence)
    params = [json.dumps(t["params"], sort_keys=True) for t in d["trials"]]
    assert len(set(params)) == len(params)
    # trial 0 is the template's own settings; the best is the lowest value any finished trial
    # reached
    t0 = d["trials"][0]
    assert t0["baseline"] and t0["params"] == {
        "train.learning_rate": 0.01,
        "train.batch_size": 16,
        "train.optimizer": "sgd",
    }
    done = [t for t in d["trials"] if t["state"] == "complete"]
    assert done and d["best_value"] == min(t["value"] for t in done)
    assert d["best"]["params"] == next(t["params"] for t in done if t["value"] == d["best_value"])
    # best.yaml trains as it stands, with the best parameters
    best = Path(d["best_yaml"])
    raw = yaml.safe_load(best.read_text())
    for k, v in d["best"]["params"].items():
        a, b = k.split(".")
        assert raw[a][b] == v
    r = run_process("train", best, "--print-config")
    assert r.code == 0, r.err
    # a rerun with the study complete runs nothing more
    r = run_process("tune", exp, "--trials", "8", *FAST, "--json")
    assert r.code == 0 and json.loads(r.out)["ran"] == 0
    # bigmodel runs marks the trials; the pruned ones say so
    rows = json.loads(run_process("runs", exp, "--json").out)["runs"]
    assert len(rows) == len(states)
    by_trial = {x["trial"]: x for x in rows}
    for t in d["trials"]:
        want = {"complete": "finished", "pruned": "pruned", "fail": "interrupted"}[t["state"]]
        assert by_trial[t["number"]]["status"] == want


def test_one_tune_process_per_study_and_the_space_is_pinned(make_exp, cli):
    import fcntl

    exp = make_exp("regression")
    (exp / "tune").mkdir()
    fd = os.open(exp / "tune" / ".regression.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242", 0)
        r = cli("tune", exp, "--trials", "1")
        assert r.code == 2 and "being run by another bigmodel tune (pid 4242)" in r.err
    finally:
        os.close(fd)
    r = cli("tune", exp, "--trials", "1", "--set", "train.epochs=2", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["finished"] == 1
    r = cli(
        "tune",
        exp,
        "--trials",
        "2",
        "--set",
        "train.epochs=2",
        "--set",
        "tune.space={train.learning_rate: {loguniform: [0.001, 0.1]}}",
    )
    assert r.code == 2 and "searched another space" in r.err and "--study" in r.err
    r = cli(
        "tune",
        exp,
        "--trials",
        "1",
        "--set",
        "train.epochs=2",
        "--set",
        "tune.space={train.learning_rate: {loguniform: [0.001, 0.1]}}",
        "--study",
        "lr-only",
        "--json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["study"] == "lr-only"
    r = cli("tune", exp, "--trials", "1", "--study", "../elsewhere")
    assert r.code == 2 and "is not a study name" in r.err


def _fake_run(
    runs: Path,
    name: str,
    status: str,
    pid: int,
    history: list[dict],
    test: dict | None = None,
    tune: dict | None = None,
    start: float = 0.0,
) -> None:
    import datetime as dt
    import platform

    d = runs / name
    d.mkdir(parents=True)
    iso = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    meta = {
        "name": "x",
        "created": iso(start),
        "sessions": [
            {
                "start": iso(start),
                "end": None if status == "running" else iso(start + 90),
                "status": status,
                "host": platform.node(),
                "pid": pid,
            }
        ],
    }
    if tune:
        meta["tune"] = tune
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": 5}}))
    keys = list(history[0])
    (d / "history.csv").write_text(
        ",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in history)
    )
    if test:
        (d / "metrics.json").write_text(
            json.dumps({"data": "t.csv", "task": "classification", **test})
        )


def test_runs_table_status_sort_and_json(tmp_path, cli):
    runs = tmp_path / "exp" / "runs"

    def h(*v):
        return [
            {"epoch": i + 1, "loss": 1.0, "val_loss": x, "val_accuracy": 1 - x}
            for i, x in enumerate(v)
        ]

    from bigmodel_cli.commands.runs import _process_start

    t0 = _process_start(os.getpid())
    _fake_run(
        runs,
        "a-1",
        "completed",
        os.getpid(),
        h(0.5, 0.3, 0.4),
        {"accuracy": 0.91, "loss": 0.3},
        start=t0 - 300,
    )
    _fake_run(runs, "a-2", "running", 2**22 + 12345, h(0.6), start=t0 - 240)  # its process is gone
    _fake_run(
        runs, "a-3", "running", os.getpid(), h(0.2, 0.25), start=t0
    )  # this very process: alive
    _fake_run(
        runs,
        "a-4",
        "pruned",
        os.getpid(),
        h(0.9, 0.8),
        tune={"study": "s", "trial": 4, "params": {"train.learning_rate": 0.1}},
        start=t0 + 60,
    )
    _fake_run(runs, "a-5", "failed", os.getpid(), h(0.7), {"accuracy": 0.95}, start=t0 + 120)
    _fake_run(
        runs, "a-6", "running", os.getpid(), h(0.95), start=t0 - 3600
    )  # this pid, but the session began before the process: recycled
    r = cli("runs", tmp_path / "exp", "--json")
    assert r.code == 0, r.err
    rows = {x["name"]: x for x in json.loads(r.out)["runs"]}
    assert {k: v["status"] for k, v in rows.items()} == {
        "a-1": "finished",
        "a-2": "interrupted",
        "a-3": "running",
        "a-4": "pruned",
        "a-5": "failed",
        "a-6": "interrupted",
    }
    assert (
        rows["a-1"]["best"] == 0.3
        and rows["a-1"]["best_epoch"] == 2
        and rows["a-1"]["monitor"] == "val_loss"
    )
    assert (
        rows["a-1"]["epochs"] == 3
        and rows["a-1"]["epochs_planned"] == 5
        and rows["a-1"]["duration_s"] == 90.0
    )
    assert rows["a-1"]["test"] == {"accuracy": 0.91, "loss": 0.3}
    assert rows["a-4"]["trial"] == 4 and rows["a-4"]["study"] == "s"

    def order(key):
        return [
            x["name"]
            for x in json.loads(cli("runs", tmp_path / "exp", "--sort", key, "--json").out)["runs"]
        ]

    assert order("best") == ["a-3", "a-1", "a-2", "a-5", "a-4", "a-6"]  # lowest val_loss first
    assert order("accuracy") == [
        "a-5",
        "a-1",
        "a-6",
        "a-2",
        "a-3",
        "a-4",
    ]  # highest first, runs without it last (in start order)
    assert order("started") == ["a-6", "a-1", "a-2", "a-3", "a-4", "a-5"]
    r = cli("runs", tmp_path / "exp", "--sort", "bset")
    assert r.code == 2 and "did you mean 'best'" in r.err
    r = cli("runs", tmp_path / "exp")
    assert r.code == 0
    lines = r.out.splitlines()
    assert "best val_loss" in lines[0] and "test accuracy" in lines[0] and "trial" in lines[0]
    assert any(line.startswith("a-2") and "interrupted" in line for line in lines)
    assert any(line.startswith("a-4") and "pruned" in line and "#4" in line for line in lines)
    assert cli("runs", tmp_path / "nowhere").code == 2


def test_runs_shows_each_tasks_own_metrics_and_sorts_by_any():
    """runs' test columns: AUC, accuracy and F1 for a binary run, R², MAE and RMSE for a
    regression (what metrics.json has, in the task's order); --sort takes any of them, and
    one the runs lack is a clear error listing those they have."""
    from bigmodel_cli.commands.runs import sort_rows
    from bigmodel_cli.errors import ConfigError
    from bigmodel_cli.ui.tables import _test_keys

    binary = {"loss": 0.3, "accuracy": 0.87, "precision": 0.86, "recall": 0.83, "f1": 0.85}
    binary |= {"roc_auc": 0.95, "rows": 2000}
    regression = {"loss": 12.0, "mse": 12.0, "mae": 2.5, "rmse": 3.4, "r2": 0.91, "rows": 50}
    rows = [
        {"name": "b-1", "task": "binary", "test": binary},
        {"name": "b-2", "task": "binary", "test": {**binary, "roc_auc": 0.97}},
    ]
    assert _test_keys(rows) == ["roc_auc", "accuracy", "f1"]
    assert _test_keys([{"name": "r-1", "task": "regression", "test": regression}]) == [
        "r2",
        "mae",
        "rmse",
    ]
    assert [r["name"] for r in sort_rows(rows, "roc_auc")] == ["b-2", "b-1"]
    with pytest.raises(ConfigError) as e:
        sort_rows(rows, "r2")
    assert "--sort r2: not a column or a metric of these runs" in e.value.message
    assert "roc_auc" in e.value.hint and "f1" in e.value.hint


def test_runs_reads_an_eval_of_other_data_where_the_run_has_no_metrics_json(tmp_path):
    """eval --data FILE writes metrics-FILE.json beside the run, never metrics.json: runs
    shows the newest such file (and names its data) when the run has no metrics.json."""
    import time as _time

    from bigmodel_cli.commands.runs import describe

    run = tmp_path / "runs" / "r-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: regression\n")
    (run / "metrics-old.json").write_text(json.dumps({"r2": 0.5, "mae": 2.0}))
    _time.sleep(0.01)
    (run / "metrics-test_cars.json").write_text(json.dumps({"r2": 0.78, "mae": 1.1}))
    d = describe(run)
    assert d["test"] == {"r2": 0.78, "mae": 1.1} and d["test_data"] == "test_cars"
    (run / "metrics.json").write_text(json.dumps({"r2": 0.9}))  # the run's own wins
    assert describe(run)["test"] == {"r2": 0.9}


def test_tensorboard_event_files(make_exp, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp = make_exp("regression")
    r = cli("train", exp, "--set", "train.epochs=3", "--json")
    assert r.code == 0, r.err
    run = Path(json.loads(r.out)["run_dir"])

    def scalars(sub: str) -> dict[str, list[tuple[int, float]]]:
        ea = EventAccumulator(str(run / "tensorboard" / sub))
        ea.Reload()
        return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}

    train, val = scalars("train"), scalars("validation")
    import csv

    with open(run / "history.csv", newline="") as f:
        hist = list(csv.DictReader(f))
    assert [s for s, _ in train["epoch_loss"]] == [1, 2, 3]
    assert [round(v, 2) for _, v in val["epoch_loss"]] == [
        round(float(h["val_loss"]), 2) for h in hist
    ]
    assert {"epoch_mae", "epoch_rmse", "epoch_learning_rate", "epoch_samples_per_s"} <= set(train)
    steps = [s for s, _ in train["step_loss"]]
    assert (
        len(steps) >= 3 and steps == sorted(steps) and steps[-1] <= 3 * 19
    )  # global steps, about 20 points an epoch at most
    r = cli("train", exp, "--set", "train.epochs=1", "--set", "train.tensorboard=false", "--json")
    assert not (Path(json.loads(r.out)["run_dir"]) / "tensorboard").exists()


def test_the_templates_tune_sections_are_valid():
    from bigmodel_cli.config.load import load_experiment
    from bigmodel_cli.commands.tune import check_values, plan

    for name in ("regression", "mnist-cnn"):
        cfg, _ = load_experiment(ROOT / "templates" / name)
        dists, metric, direction = plan(cfg)
        check_values(ROOT / "templates" / name, [], dists)
        assert metric.startswith("val_") and len(dists) >= 2
