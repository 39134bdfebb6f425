"""Nothing lost, whatever happens to a run: file modes, early kills, damaged
checkpoints, full disks, read-only folders."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import run_process


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, cli, mask):
    old = os.umask(mask)
    try:
        exp = tmp_path / "exp"
        assert cli("init", exp, "--template", "regression").code == 0
        r = cli("train", exp, "--set", "train.epochs=2")
        assert r.code == 0, r.err
        run = Path(r.out.strip().splitlines()[-1])
        assert cli("eval", run).code == 0
        assert cli("predict", run, "--input", exp / "data" / "test.csv", "--output", tmp_path / "p.csv").code == 0
        assert cli("export", run, "--format", "onnx", "--output", tmp_path / "m.onnx").code == 0
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    files = [exp / "experiment.yaml", run / "model.keras", run / "config.yaml", run / "meta.json", run / "metrics.json", run / "history.csv",
             run / "checkpoints" / "last.keras", run / "checkpoints" / "best.keras", run / "plots" / "training.png", run / "inference.onnx", tmp_path / "p.csv", tmp_path / "m.onnx"]
    modes = {str(f.relative_to(tmp_path)): oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(want)}, modes
