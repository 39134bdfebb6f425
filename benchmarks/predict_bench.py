"""Batch prediction at file scale: bigmodel vs the plain script vs the I/O floor.

Builds an N-row, 10-feature CSV (plus an id column), trains the regression
template once, then times in the same run, each in a fresh process that
reports its own peak RSS:

  plain     pd.read_csv the whole file, model.predict (default batch 32), to_csv
  floor     stream the CSV in and write an id + float column out, no model
  bigmodel  `bigmodel predict RUN --input in.csv --output out.csv`

and checks bigmodel's output against model.predict. Repeats bigmodel and the
floor at 5x the rows to show memory stays flat.

    python benchmarks/predict_bench.py [--rows 1000000] [--big-rows 5000000] [--skip-plain]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def make_csv(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pc

    rng = np.random.default_rng(0)
    with pc.CSVWriter(
        str(path), pa.schema([("patient_id", pa.string())] + [(c, pa.float32()) for c in FEATURES])
    ) as w:
        for start in range(0, rows, 500_000):
            n = min(500_000, rows - start)
            cols = [pa.array([f"P{i:08d}" for i in range(start, start + n)])]
            cols += [pa.array(rng.normal(50, 15, n).round(2).astype("float32")) for _ in FEATURES]
            w.write_table(pa.Table.from_arrays(cols, names=["patient_id", *FEATURES]))


# ---- the contenders (run as `python predict_bench.py --mode M run_dir in out`)


def mode_plain(run: str, src: str, dst: str) -> None:
    import keras
    import pandas as pd

    model = keras.models.load_model(f"{run}/model.keras")
    df = pd.read_csv(src)
    df["prediction"] = model.predict(df[FEATURES].to_numpy("float32"), verbose=0)[:, 0]
    df[["patient_id", "prediction"]].to_csv(dst, index=False)


def mode_floor(run: str, src: str, dst: str) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pc

    # 1 MB blocks: the best plain settings measured (bounded read-ahead, no slower).
    reader = pc.open_csv(
        src,
        read_options=pc.ReadOptions(block_size=1 << 20),
        convert_options=pc.ConvertOptions(
            column_types={c: pa.float32() for c in FEATURES} | {"patient_id": pa.string()}
        ),
    )
    writer = None
    for batch in reader:
        x = np.column_stack([batch.column(c).to_numpy() for c in FEATURES])
        out = pa.Table.from_arrays(
            [batch.column("patient_id"), pa.array(x[:, 0])], names=["patient_id", "prediction"]
        )
        writer = writer or pc.CSVWriter(dst, out.schema)
        writer.write_table(out)
    writer.close()


def mode_bigmodel(run: str, src: str, dst: str) -> None:
    from bigmodel_cli.cli import main

    code = main(["predict", run, "--input", src, "--output", dst, "--force"])
    if code:
        raise SystemExit(code)


def measure(mode: str, run: str, src: Path, dst: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    if dst.exists():
        dst.unlink()
    p = subprocess.run(
        [sys.executable, __file__, "--mode", mode, run, str(src), str(dst)],
        capture_output=True,
        text=True,
        env=env,
    )
    if p.returncode:
        raise RuntimeError(f"{mode} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def child(mode: str, run: str, src: str, dst: str) -> None:
    # Import cost is part of a user's wait, but the model/TF import is the same for
    # plain and bigmodel; the timer covers everything after interpreter start.
    t = time.perf_counter()
    {"plain": mode_plain, "floor": mode_floor, "bigmodel": mode_bigmodel}[mode](run, src, dst)
    secs = time.perf_counter() - t
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would
    # report its parent's peak.
    peak = (
        next(
            int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")
        )
        / 1024
    )
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak}))


def check_output(run: str, src: Path, dst: Path, rows: int = 100_000) -> dict:
    """Largest difference from model.predict, absolute and relative to the value:
    float32 tolerance scales with magnitude (these synthetic rows predict ~1e3)."""
    import keras
    import numpy as np
    import pandas as pd

    model = keras.models.load_model(f"{run}/model.keras")
    a = pd.read_csv(src, nrows=rows, dtype={"patient_id": str})
    b = pd.read_csv(dst, nrows=rows, dtype={"patient_id": str})
    assert (a["patient_id"] == b["patient_id"]).all(), "ids or order differ"
    ref = model.predict(a[FEATURES].to_numpy("float32"), batch_size=8192, verbose=0)[:, 0]
    diff = np.abs(ref - b["prediction"].to_numpy())
    return {
        "max_abs": float(diff.max()),
        "max_rel": float((diff / np.maximum(1.0, np.abs(ref))).max()),
        "rows_checked": len(ref),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=5_000_000)
    ap.add_argument("--skip-plain", action="store_true", help="skip the slow plain script")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bigmodel-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    from bigmodel_cli import api

    exp = tmp / "exp"
    if not exp.exists():
        api.init(exp, "regression")
    run = str(api.train(exp, ["train.epochs=2"]).run_dir)

    report: dict = {
        "machine": f"{platform.node()} · {os.cpu_count()} CPU threads · {platform.machine()}",
        "python": platform.python_version(),
    }
    for rows in (args.rows, args.big_rows):
        src = tmp / f"in-{rows}.csv"
        if not src.exists():
            make_csv(src, rows)
        res = {"rows": rows, "file_mb": round(src.stat().st_size / 2**20, 1)}
        names = ["floor", "bigmodel"] + (
            ["plain"] if rows == args.rows and not args.skip_plain else []
        )
        for mode in names:
            m = measure(mode, run, src, tmp / f"out-{mode}-{rows}.csv")
            res[mode] = {
                "seconds": round(m["seconds"], 2),
                "rows_per_s": round(rows / m["seconds"]),
                "peak_rss_mb": round(m["peak_rss_mb"], 1),
            }
        res["diff_vs_model_predict"] = check_output(run, src, tmp / f"out-bigmodel-{rows}.csv")
        res["bigmodel_over_floor_time"] = round(
            res["bigmodel"]["seconds"] / res["floor"]["seconds"], 2
        )
        if "plain" in res:
            res["speedup_over_plain"] = round(
                res["plain"]["seconds"] / res["bigmodel"]["seconds"], 1
            )
        report[f"rows_{rows}"] = res
        print(json.dumps(res), file=sys.stderr)
    small, big = report[f"rows_{args.rows}"], report[f"rows_{args.big_rows}"]
    report["rss_growth_mb"] = round(
        big["bigmodel"]["peak_rss_mb"] - small["bigmodel"]["peak_rss_mb"], 1
    )
    report["targets"] = {
        "speedup_over_plain >= 10": small.get("speedup_over_plain", float("nan")) >= 10
        if "speedup_over_plain" in small
        else None,
        "bigmodel_over_floor_time <= 2.5": small["bigmodel_over_floor_time"] <= 2.5,
        "peak_rss < 500 MB at both sizes": max(
            small["bigmodel"]["peak_rss_mb"], big["bigmodel"]["peak_rss_mb"]
        )
        < 500,
        "rss growth < 50 MB": report["rss_growth_mb"] < 50,
        "output matches model.predict (rel 1e-5)": small["diff_vs_model_predict"]["max_rel"]
        <= 1e-5,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--mode":
        child(sys.argv[2], *sys.argv[3:6])
    else:
        main()
