"""How training time grows with rows: bigmodel against LightGBM and CatBoost, same run.

One synthetic table per size, made the same way at every size (seed 0): 30 columns,
20 numbers (5% of cells missing in five of them, two heavy-tailed), 8 categories of 3
to 200 values (gaps in two), 2 small integer counts, and a binary target from a rule
over numbers, a category and an interaction, with 10% of labels flipped. 80% trains,
20% scores. For each size, each contender as a whole process:

  bigmodel   ``init --data train.csv --target y`` (its defaults, untouched; it
             streams where the table would take over a quarter of RAM), ``train``,
             ``eval --data test.csv``
  lightgbm, catboost
             ``benchmarks/peers.py`` (defaults)

Reported per size: bigmodel train's process seconds, each peer's fit and process
seconds, the ratio to CatBoost's fit, seconds per 10k rows (flat when time grows
linearly), accuracy and AUC. Issue 38's goal: at 1M rows, bigmodel train at most
3x CatBoost's fit time on these two cores.

    python benchmarks/scale_curve.py [--rows 10000,30000,100000,300000,1000000]
        [--peers lightgbm,catboost] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from tabular_quality import run_bigmodel, run_peer  # noqa: E402

GOAL_TIMES_CATBOOST = 3.0


def table(n: int, seed: int = 0):
    """The benchmark's table of ``n`` rows (the same rule and columns at every size)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for j in range(20):
        v = rng.normal(size=n)
        if j in (3, 4):
            v = np.exp(v * 1.5)  # heavy-tailed amounts
        cols[f"x{j}"] = v.round(4)
    sizes = [3, 5, 8, 12, 20, 50, 100, 200]
    for j, k in enumerate(sizes):
        cols[f"c{j}"] = np.array([f"v{i}" for i in range(k)])[rng.integers(0, k, n)]
    cols["n0"] = rng.poisson(2.0, n)
    cols["n1"] = rng.poisson(0.5, n)
    df = pd.DataFrame(cols)
    c5 = df["c5"].str[1:].astype(int).to_numpy()
    logit = (
        1.2 * df["x0"]
        - 0.8 * df["x1"]
        + 0.9 * np.sin(2 * df["x2"])
        + 0.6 * np.log1p(df["x3"])
        + 0.7 * (df["x5"] * df["x6"] > 0.3)
        + np.where(c5 % 3 == 0, 1.0, -0.5)
        + 0.4 * (df["c1"] == "v2")
        + 0.3 * df["n0"]
        - 1.0
    ).to_numpy()
    flip = rng.random(n) < 0.1
    y = (logit + rng.logistic(size=n) * 0.5 > 0) ^ flip
    df["y"] = np.where(y, "yes", "no")
    for j in (7, 8, 9, 10, 11):
        df.loc[rng.random(n) < 0.05, f"x{j}"] = np.nan
    for c in ("c2", "c6"):
        df.loc[rng.random(n) < 0.05, c] = None
    return df


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,30000,100000,300000,1000000")
    ap.add_argument("--peers", default="lightgbm,catboost")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    peers = [p for p in args.peers.split(",") if p]
    print(f"scale curve · {machine()} · binary, 30 columns, 80/20")
    results = []
    with tempfile.TemporaryDirectory(prefix="bigmodel-scale-") as tmp:
        for n in [int(r) for r in args.rows.split(",")]:
            df = table(n)
            cut = int(round(0.8 * n))
            work = Path(tmp) / str(n)
            work.mkdir()
            df.iloc[:cut].to_csv(work / "train.csv", index=False)
            df.iloc[cut:].to_csv(work / "test.csv", index=False)
            one = {"bigmodel": run_bigmodel(work, "y", "binary", env, [])}
            for p in peers:
                one[p] = run_peer(p, work, "y", "binary", env)
            results.append({"rows": n, **one})
            bm = one["bigmodel"]
            cat = one.get("catboost", {}).get("fit_s")
            ratio = f" · {bm['train_s'] / cat:.1f}x CatBoost's fit" if cat else ""
            print(
                f"{n:>9,} rows · bigmodel train {bm['train_s']:.1f}s "
                f"({10_000 * bm['train_s'] / n:.2f}s per 10k rows, {bm['epochs']} epochs) "
                f"acc {bm['accuracy']:.4f} AUC {bm['roc_auc']:.4f}{ratio}"
            )
            for p in peers:
                d = one[p]
                if "error" in d:
                    print(f"{'':>9}   {p}: {d['error']}")
                    continue
                print(
                    f"{'':>9}   {p} fit {d['fit_s']:.1f}s, process {d['process_s']:.1f}s "
                    f"({10_000 * d['fit_s'] / n:.2f}s per 10k rows) "
                    f"acc {d['accuracy']:.4f} AUC {d['roc_auc']:.4f}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    big = [r for r in results if r["rows"] >= 1_000_000 and "fit_s" in r.get("catboost", {})]
    for r in big:
        ratio = r["bigmodel"]["train_s"] / r["catboost"]["fit_s"]
        verdict = "meets" if ratio <= GOAL_TIMES_CATBOOST else "misses"
        print(f"{r['rows']:,} rows: {ratio:.1f}x CatBoost's fit ({verdict} the goal of 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
