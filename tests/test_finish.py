"""train.inference_copy: background — the plot and inference.onnx are written by
a detached process after train returns; predict and serve wait for it, and a
killed background process costs only the fast path, never a torn file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bigmodel_cli.training import finish
from conftest import run_process

BG = {"BIGMODEL_INFERENCE_COPY": "background"}


def _train(exp, *sets):
    r = run_process(
        "train",
        exp,
        "--set",
        "train.epochs=2",
        *[a for s in sets for a in ("--set", s)],
        "--json",
        env=BG,
    )
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_train_returns_before_the_copy_and_predict_waits_for_it(make_exp, tmp_path):
    exp = make_exp("regression")
    doc = _train(exp)
    run = doc["run_dir"]
    assert doc["inference_copy"] == "background"
    assert "export" in doc["times"] and doc["times"]["export"] < 0.5  # only the hand-over
    # predict right away: it waits for the background copy and then uses it
    out = tmp_path / "p.csv"
    r = run_process(
        "predict", run, "--input", exp / "data" / "test.csv", "--output", out, "--json", env=BG
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["engine"] == "onnxruntime"
    assert not finish.busy(run)
    from pathlib import Path

    run = Path(run)
    assert (run / "plots" / "training.png").stat().st_size > 0
    meta = json.loads((run / "inference.json").read_text())
    assert (
        meta["max_abs_diff"] < 1e-4
        and not (run / finish.SAMPLE).exists()
        and not (run / finish.NOTE).exists()
    )


def test_the_lock_is_held_from_before_the_process_starts(tmp_path):
    """busy() is true the moment start_background returns (the lock was taken
    before the process existed), and wait() sees it end."""
    import numpy as np

    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    # no model.keras: the copy fails, the plot is still drawn, the reason is kept
    pid = finish.start_background(
        run,
        [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
        np.zeros((2, 3), np.float32),
        None,
    )
    assert finish.busy(run)
    assert finish.wait(run, timeout=120)
    assert (run / "plots" / "training.png").is_file()
    assert "no inference.onnx" in (run / finish.NOTE).read_text()
    assert not (run / finish.SAMPLE).exists()
    for _ in range(50):  # the process exits just after it lets the lock go
        if not _alive(pid):
            break
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_wait_times_out_while_the_lock_is_held(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl,os,time; fd=os.open({str(tmp_path / finish.LOCK)!r}, "
            "os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', "
            "flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert finish.busy(tmp_path) and not finish.wait(tmp_path, timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert finish.wait(tmp_path, timeout=5) and not finish.busy(tmp_path)


# make test's time (12-16 s); test_train_returns_before_the_copy_and_predict_waits_for_it keeps the
# background copy in it
@pytest.mark.slow
def test_a_killed_background_copy_leaves_predict_on_tensorflow(make_exp, tmp_path):
    exp = make_exp("regression")
    run = _train(exp, "train.inference_copy=wait")["run_dir"]
    from pathlib import Path

    run = Path(run)
    for name in ("inference.onnx", "inference.json"):
        (run / name).unlink()
    import numpy as np

    pid = finish.start_background(
        run, [{"epoch": 1, "loss": 1.0}], np.zeros((4, 10), np.float32), None
    )
    time.sleep(0.5)  # still importing TensorFlow
    os.kill(pid, signal.SIGKILL)
    assert finish.wait(run, timeout=10)  # a killed holder releases the lock
    assert not (run / "inference.json").exists()
    out = tmp_path / "p.csv"
    r = run_process("predict", run, "--input", exp / "data" / "test.csv", "--output", out, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["engine"] == "tensorflow"
    r = run_process(
        "predict",
        run,
        "--input",
        exp / "data" / "test.csv",
        "--output",
        out,
        "--force",
        "--engine",
        "onnxruntime",
    )
    assert r.code == 2 and "no inference.onnx" in r.err


def test_none_writes_no_copy_and_the_setting_is_checked(make_exp, cli):
    exp = make_exp("linear")
    r = cli("train", exp, "--set", "train.epochs=1", "--set", "train.inference_copy=none", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    from pathlib import Path

    assert (
        doc["inference_copy"] == "none"
        and (Path(doc["run_dir"]) / "plots" / "training.png").is_file()
    )
    r = run_process(
        "train", exp, "--set", "train.epochs=1", env={"BIGMODEL_INFERENCE_COPY": "later"}
    )
    assert r.code == 2 and "BIGMODEL_INFERENCE_COPY=later" in r.err


# make test's time (22 s); test_train_returns_before_the_copy_and_predict_waits_for_it keeps the
# background copy in it
@pytest.mark.slow
def test_a_resume_right_after_train_gets_a_copy_of_its_own_model(make_exp, tmp_path):
    """The first run's background copy may still be running when the resumed
    session replaces model.keras: the copy in the end is the new model's."""
    from pathlib import Path

    from bigmodel_cli.model.export import file_sha256

    exp = make_exp("regression")
    run = Path(_train(exp)["run_dir"])
    r = run_process("train", run, "--resume", "--set", "train.epochs=4", "--json", env=BG)
    assert r.code == 0, r.err
    assert finish.wait(run, timeout=120)
    meta = json.loads((run / "inference.json").read_text())
    assert meta["model_sha256"] == file_sha256(run / "model.keras")
    out = tmp_path / "p.csv"
    r = run_process("predict", run, "--input", exp / "data" / "test.csv", "--output", out, "--json")
    assert r.code == 0 and json.loads(r.out)["engine"] == "onnxruntime", r.err


def test_a_misspelt_hook_is_an_error_not_a_silent_no_op():
    from bigmodel_cli.training.callbacks import CallbackList

    class Typo:
        def on_epoch_ned(self, epoch, row):  # never called: the list refuses it
            raise AssertionError

    with pytest.raises(TypeError, match="on_epoch_ned is not a training hook"):
        CallbackList([Typo()])
    seen = []

    class Fine:
        def on_epoch_end(self, epoch, row):
            seen.append(epoch)

    hooks = CallbackList([Fine(), object()])  # an observer may leave hooks out
    hooks.on_epoch_end(3, {})
    hooks.on_train_begin({})
    assert seen == [3]
    with pytest.raises(AttributeError):
        hooks.on_epoch_ned(3, {})
