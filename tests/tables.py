"""Random legitimate tables, each a pure function of its seed (a failure prints it).

``random_table(seed)`` draws a handful of columns of the kinds real tables hold
and a target that depends on some of them:

- numbers, normal and heavy-tailed (log-normal, Pareto, Student-t 1.5);
- integer codes (``*_code``: a few values far apart), small counts;
- categories of 2 to 500 values, including ones past the one-hot limit;
- yes/no columns in mixed spellings (``yes``, ``No``, ``Y``, ``false``);
- ISO dates, free text, string and integer ids, constants;
- gaps of up to 30% in any feature, and a few rows without a target.

``prediction_rows(df, target, seed)`` makes what a user sends later: rows with
values never seen in training, empty cells, an extra column, and the columns in
another order.

Replay a failure: ``python -c "import tables; print(tables.random_table(SEED)[0])"``
from ``tests/``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = (
    "normal",
    "heavy",
    "codes",
    "count",
    "category",
    "many_categories",
    "yesno",
    "date",
    "text",
    "string_id",
    "int_id",
    "constant",
)
WORDS = (
    "good bad slow fast cheap price service delivery quality broken love hate again never "
    "always box late early fine"
).split()
YES = ["yes", "Yes", "YES", "y", "Y", "true", "True"]
NO = ["no", "No", "NO", "n", "N", "false", "False"]


def _column(kind: str, n: int, rng: np.random.Generator, name: str):
    """(values, signal or None): a column and its contribution to the target (None: noise)."""
    if kind == "normal":
        v = rng.normal(rng.uniform(-100, 100), rng.uniform(0.1, 50), n)
        return v.round(3), (v - v.mean()) / (v.std() or 1)
    if kind == "heavy":
        draw = rng.integers(3)
        v = (
            rng.lognormal(3, 1.5, n)
            if draw == 0
            else rng.pareto(1.2, n) * 1000
            if draw == 1
            else rng.standard_t(1.5, n)
        )
        r = pd.Series(v).rank(pct=True).to_numpy() - 0.5
        return v.round(4), r * 3
    if kind == "codes":
        codes = rng.choice(
            [101, 2050, 3999, 40001, 77777, 90210], int(rng.integers(3, 7)), replace=False
        )
        v = rng.choice(codes, n)
        return v, (v == codes[0]) * 2.0 - 0.5
    if kind == "count":
        v = rng.poisson(rng.uniform(0.3, 4), n)
        return v, v - v.mean()
    if kind in ("category", "many_categories"):
        k = int(rng.integers(2, 15)) if kind == "category" else int(rng.integers(15, 501))
        levels = np.array([f"{name}_{i}" for i in range(k)])
        weights = rng.dirichlet(np.ones(k) * 0.7)
        idx = rng.choice(k, n, p=weights)
        effect = rng.normal(0, 1.5, k)
        return levels[idx], effect[idx]
    if kind == "yesno":
        truth = rng.random(n) < rng.uniform(0.2, 0.8)
        v = np.where(truth, rng.choice(YES, n), rng.choice(NO, n))
        return v, truth * 2.0 - 1
    if kind == "date":
        days = rng.integers(0, 4 * 365, n)
        d = pd.Timestamp("2019-01-01") + pd.to_timedelta(days, unit="D")
        return np.asarray(d.strftime("%Y-%m-%d")), np.isin(d.day_of_week, [5, 6]) * 2.0 - 0.5
    if kind == "text":
        good = rng.random(n) < 0.5
        v = [
            " ".join(rng.choice(WORDS[:9] if g else WORDS[9:], int(rng.integers(4, 12))))
            for g in good
        ]
        return np.asarray(v, dtype=object), good * 2.0 - 1
    if kind == "string_id":
        return np.asarray([f"ID-{i:06d}" for i in rng.permutation(n * 3)[:n]]), None
    if kind == "int_id":
        return rng.permutation(n) + 1, None
    return np.full(n, "same"), None  # constant


def random_table(seed: int, task: str | None = None) -> tuple[pd.DataFrame, str, str, list[str]]:
    """(table, target column, task, the kinds drawn); every column
    but ids and constants may have gaps."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 500))
    task = task or str(rng.choice(["binary", "classification", "regression"]))
    kinds = list(rng.choice(KINDS, int(rng.integers(3, 8))))
    if not any(
        k in kinds
        for k in (
            "normal",
            "heavy",
            "count",
            "category",
            "many_categories",
            "yesno",
            "date",
            "text",
            "codes",
        )
    ):
        kinds.append("normal")
    cols, signal = {}, np.zeros(n)
    for i, kind in enumerate(kinds):
        name = f"{kind}_{i}" if kind != "codes" else f"store_{i}_code"
        v, s = _column(kind, n, rng, name)
        cols[name] = v
        if s is not None:
            signal += s * rng.uniform(0.5, 1.5)
    df = pd.DataFrame(cols)
    for name, kind in zip(cols, kinds):
        if kind in ("string_id", "int_id", "constant"):
            continue
        gap = rng.uniform(0, 0.3) if rng.random() < 0.6 else 0.0
        hole = rng.random(n) < gap
        if hole.any():
            df[name] = df[name].astype(object)
            df.loc[hole, name] = None
    noise = rng.normal(0, 0.5, n)
    z = signal + noise
    if task == "regression":
        y: np.ndarray = (z * rng.uniform(1, 1000) + rng.uniform(-500, 500)).round(3)
    elif task == "binary":
        y = np.where(z > np.median(z), "pos", "neg")
    else:
        k = int(rng.integers(3, 6))
        y = np.asarray(
            [f"class_{c}" for c in np.digitize(z, np.quantile(z, np.linspace(0, 1, k + 1)[1:-1]))]
        )
    df["target"] = y
    if rng.random() < 0.3:
        df["target"] = df["target"].astype(object)
        df.loc[rng.choice(n, 3, replace=False), "target"] = None
    return df, "target", task, kinds


def prediction_rows(df: pd.DataFrame, target: str, seed: int, rows: int = 25) -> pd.DataFrame:
    """Rows as a user sends them later: unseen values, empty cells, an extra
    column, the columns shuffled."""
    rng = np.random.default_rng(seed + 1)
    out = (
        df.drop(columns=[target])
        .sample(min(rows, len(df)), random_state=seed)
        .reset_index(drop=True)
        .astype(object)
    )
    for c in out.columns:
        s = df[c].dropna()
        if len(s) and isinstance(s.iloc[0], str) and not str(s.iloc[0])[:4].isdigit():
            out.loc[0, c] = "never-seen-" + str(c)
        out.loc[rng.random(len(out)) < 0.15, c] = None
    out.loc[1, :] = None  # a row of empty cells
    out["extra_column"] = rng.normal(size=len(out))
    return out[list(rng.permutation(out.columns))]
