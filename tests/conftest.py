"""Shared helpers: run the CLI in-process (fast) or as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU everywhere in tests: determinism
# train writes inference.onnx and the plot before it returns, so tests can look
# at them at once and no background process outlives its test's folder
# (tests/test_finish.py sets background explicitly).
os.environ.setdefault("BIGMODEL_INFERENCE_COPY", "wait")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """cli('train', 'exp', '--set', 'train.epochs=1') -> Result."""
    from bigmodel_cli.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return run


def run_process(
    *args: str,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> Result:
    e = {**os.environ, **(env or {})}
    p = subprocess.run(
        [sys.executable, "-m", "bigmodel_cli", *map(str, args)],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def make_exp(tmp_path, cli):
    """make_exp('linear') -> an experiment folder made by `bigmodel init`."""

    def make(template: str, name: str | None = None) -> Path:
        target = tmp_path / (name or template)
        r = cli("init", target, "--template", template)
        assert r.code == 0, r.err
        return target

    return make


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes: to assert nothing changed."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def predict_on_both(cli, run: Path, new: Path, out_dir: Path, *extra: str) -> list:
    """`bigmodel predict` on the ONNX fast path and on TensorFlow:
    [onnxruntime frame, tensorflow frame]."""
    import pandas as pd

    outs = []
    for engine in ("onnxruntime", "tensorflow"):
        out = out_dir / f"{engine}.csv"
        r = cli("predict", run, "--input", new, "--output", out, "--engine", engine, *extra)
        assert r.code == 0, (engine, r.err)
        outs.append(pd.read_csv(out))
    return outs
