"""Prediction on a mixed-type table: `bigmodel predict` vs a plain pandas + model.predict script.

Builds an N-row table with an id, four numeric columns (some cells missing),
two string categories and a boolean spelled yes/no, makes an experiment with
`bigmodel init --data` and trains it briefly, then times in the same run, each
in a fresh process (time from interpreter start, imports included):

  plain     pd.read_csv, model.predict on the raw columns (the model's own
            lookups and imputation), to_csv
  bigmodel  `bigmodel predict RUN --input in.csv --output out.csv`

and compares the two outputs. Target: bigmodel >= 10x the plain script's rows/s.

    python benchmarks/tabular_bench.py [--rows 500000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

PLAIN = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, pandas as pd, keras, tensorflow as tf
from bigmodel_cli.model.loading import register_layers
register_layers()                                  # bigmodel's lookup layers, so model.keras loads
model = keras.models.load_model(sys.argv[1] + "/model.keras")
df = pd.read_csv(sys.argv[2])
numbers = [c for c in ("amount", "balance", "tenure", "visits") if c in df]
feed = {"features": tf.constant(df[numbers].to_numpy("float32"))}
for name, inp in model.input.items():
    if inp.dtype == "string":
        feed[name] = tf.constant(df[name].fillna("").astype(str).to_numpy())
p = model.predict(feed, verbose=0)
pd.DataFrame({"account": df["account"], "prediction": p[:, 0]}).to_csv(sys.argv[3], index=False)
"""


def make_table(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "account": [f"A{i:09d}" for i in range(rows)],
            "amount": rng.gamma(2.0, 50.0, rows).round(2),
            "balance": rng.normal(1000, 400, rows).round(2),
            "tenure": rng.integers(0, 240, rows).astype(float),
            "visits": rng.poisson(3, rows).astype(float),
            "region": rng.choice(["north", "south", "east", "west", "centre"], rows),
            "channel": rng.choice(
                ["web", "app", "branch", "phone", "partner", "mail", "kiosk"], rows
            ),
            "premium": rng.choice(["yes", "no"], rows),
        }
    )
    for c in ("amount", "balance", "tenure"):
        df.loc[rng.random(rows) < 0.05, c] = np.nan
    df["spend"] = (
        df.amount.fillna(100) * 1.5
        + df.balance.fillna(1000) * 0.1
        + (df.region == "north") * 40
        + (df.premium == "yes") * 60
        + rng.normal(0, 10, rows)
    ).round(2)
    df.to_csv(path, index=False)


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{cmd[:4]} failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    import numpy as np
    import pandas as pd

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    bm = [sys.executable, "-m", "bigmodel_cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_table(tmp / "train.csv", 20_000, seed=1)
        make_table(tmp / "big.csv", args.rows, seed=2)
        run(
            [*bm, "init", str(tmp / "exp"), "--data", str(tmp / "train.csv"), "--target", "spend"],
            env,
        )
        run([*bm, "train", str(tmp / "exp"), "--set", "train.epochs=3"], env)
        runs = sorted((tmp / "exp" / "runs").iterdir())
        run_dir = str(runs[-1])
        big = pd.read_csv(tmp / "big.csv", nrows=5).drop(columns=["spend"])
        big.to_csv(tmp / "small.csv", index=False)
        src = tmp / "in.csv"
        pd.read_csv(tmp / "big.csv").drop(columns=["spend"]).to_csv(src, index=False)
        t_plain = run([sys.executable, "-c", PLAIN, run_dir, str(src), str(tmp / "plain.csv")], env)
        t_ours = run(
            [*bm, "predict", run_dir, "--input", str(src), "--output", str(tmp / "ours.csv")], env
        )
        a = pd.read_csv(tmp / "plain.csv")["prediction"].to_numpy()
        b = pd.read_csv(tmp / "ours.csv")["prediction"].to_numpy()
        engine = json.loads(
            subprocess.run(
                [
                    *bm,
                    "predict",
                    run_dir,
                    "--input",
                    str(tmp / "small.csv"),
                    "--output",
                    str(tmp / "e.csv"),
                    "--json",
                ],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )["engine"]
    report = {
        "machine": machine(),
        "rows": args.rows,
        "plain_seconds": round(t_plain, 2),
        "bigmodel_seconds": round(t_ours, 2),
        "plain_rows_per_s": round(args.rows / t_plain),
        "bigmodel_rows_per_s": round(args.rows / t_ours),
        "ratio": round(t_plain / t_ours, 2),
        "bigmodel_engine": engine,
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "max_rel_diff": float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a)))),
        "target": "ratio >= 10",
        "met": t_plain / t_ours >= 10,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
