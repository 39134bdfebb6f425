"""Streaming: memory flat in the data size, speed against in-memory training, conversion MB/s.

Writes a 10-feature CSV of 3M rows and one of 12M rows (synthetic numbers, a
binary label), then in fresh processes:

1. ``bigmodel prepare`` on each: conversion MB/s (CSV bytes read per second);
2. ``bigmodel train --set data.stream=true`` on each, one epoch: peak RSS
   (the child's ru_maxrss), which must be flat (12M within 1.2x of 3M) and
   under 1.5 GB;
3. ``bigmodel train --set data.stream=false`` on the 3M rows: the in-memory
   baseline's samples/s and peak RSS; streamed samples/s must be at least 0.7x.

Run: ``python benchmarks/stream_bench.py [--rows 3000000 12000000] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine  # noqa: E402

EXPERIMENT = """name: stream-bench
task: binary
seed: 1
data:
  train: {train}
  target: label
  validation: null
  stream: {stream}
model:
  layers:
    - Dense: {{units: 32, activation: relu}}
    - Dense: {{units: 1, activation: sigmoid}}
train:
  epochs: 1
  batch_size: 1024
  learning_rate: 0.001
"""


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    w = np.linspace(-1, 1, 10)
    with pacsv.CSVWriter(
        path,
        pa.schema(
            [*(pa.field(f"f{i}", pa.float32()) for i in range(10)), pa.field("label", pa.int8())]
        ),
    ) as out:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            x = rng.normal(size=(n, 10)).astype(np.float32)
            y = (x @ w + rng.normal(scale=0.5, size=n) > 0).astype(np.int8)
            out.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(10)}, "label": y}))


def run_child(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """(result, peak RSS in MB, seconds) of one fresh process."""
    t = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = p.communicate()
    seconds = time.perf_counter() - t
    import resource

    # the children's peak so far; each measurement below runs in a new child after a reset
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if p.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, p.returncode, out, err), peak, seconds


def measured(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """run_child in a fresh intermediate process, so RUSAGE_CHILDREN holds just this one."""
    code = (
        f"import json,sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        f"import stream_bench as b; r, peak, s = b.run_child({args!r}, "
        "dict(__import__('os').environ)); print(json.dumps([r.stdout, r.stderr, peak, s]))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(p.stdout[-2000:] + p.stderr[-3000:])
    out, err, peak, s = json.loads(p.stdout.strip().splitlines()[-1])
    return subprocess.CompletedProcess(args, 0, out, err), peak, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs=2, default=[3_000_000, 12_000_000])
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="bigmodel-stream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    print(f"machine: {machine()}")
    report: dict = {"rows": a.rows}
    try:
        for rows in a.rows:
            exp = work / f"exp{rows}"
            exp.mkdir(exist_ok=True)
            csv = exp / "train.csv"
            if not csv.exists():
                t = time.perf_counter()
                write_csv(csv, rows)
                print(
                    f"wrote {rows:,} rows, {csv.stat().st_size / 2**20:,.0f} MB in "
                    f"{time.perf_counter() - t:.0f}s"
                )
            (exp / "experiment.yaml").write_text(
                EXPERIMENT.format(train="train.csv", stream="true")
            )
            shutil.rmtree(exp / "cache", ignore_errors=True)
            r, peak, s = measured([*BIGMODEL, "prepare", str(exp), "--json"], env)
            d = json.loads(r.stdout)
            report[f"prepare_{rows}"] = {
                "mb_per_s": d["mb_per_s"],
                "seconds": d["seconds"],
                "source_mb": d["source_mb"],
                "cache_mb": d["cache_mb"],
                "peak_rss_mb": round(peak),
            }
            print(
                f"prepare {rows:,} rows: {d['source_mb']:,.0f} MB of CSV in "
                f"{d['seconds']:.1f}s = {d['mb_per_s']:.1f} MB/s, peak RSS {peak:,.0f} MB"
            )
            r, peak, s = measured([*BIGMODEL, "train", str(exp), "--json"], env)
            doc = json.loads(r.stdout)
            report[f"stream_{rows}"] = {
                "samples_per_s": doc["history"][0]["samples_per_s"],
                "peak_rss_mb": round(peak),
                "seconds": round(s, 1),
            }
            print(
                f"train streamed {rows:,} rows: {doc['history'][0]['samples_per_s']:,.0f} "
                f"samples/s, peak RSS {peak:,.0f} MB, {s:.0f}s in all"
            )
        small = a.rows[0]
        exp = work / f"exp{small}"
        (exp / "experiment.yaml").write_text(EXPERIMENT.format(train="train.csv", stream="false"))
        r, peak, s = measured([*BIGMODEL, "train", str(exp), "--json"], env)
        doc = json.loads(r.stdout)
        report[f"memory_{small}"] = {
            "samples_per_s": doc["history"][0]["samples_per_s"],
            "peak_rss_mb": round(peak),
            "seconds": round(s, 1),
        }
        print(
            f"train in memory {small:,} rows: {doc['history'][0]['samples_per_s']:,.0f} "
            f"samples/s, peak RSS {peak:,.0f} MB, {s:.0f}s in all"
        )
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    big = a.rows[1]
    flat = report[f"stream_{big}"]["peak_rss_mb"] / report[f"stream_{small}"]["peak_rss_mb"]
    speed = report[f"stream_{small}"]["samples_per_s"] / report[f"memory_{small}"]["samples_per_s"]
    print()
    print(
        f"peak RSS streamed, {big:,} vs {small:,} rows: "
        f"{report[f'stream_{big}']['peak_rss_mb']:,} vs "
        f"{report[f'stream_{small}']['peak_rss_mb']:,} MB = {flat:.2f}x (target <= 1.2x, "
        "both < 1500 MB)"
    )
    print(f"streamed / in-memory samples/s on {small:,} rows: {speed:.2f}x (target >= 0.7x)")
    print(
        f"conversion: {report[f'prepare_{small}']['mb_per_s']} / "
        f"{report[f'prepare_{big}']['mb_per_s']} MB/s"
    )
    print(json.dumps(report))
    ok = flat <= 1.2 and report[f"stream_{big}"]["peak_rss_mb"] < 1500 and speed >= 0.7
    print("PASS" if ok else "MISS")


if __name__ == "__main__":
    main()
