"""What a user would pick instead of bigmodel for a table, run as a whole process:

    python benchmarks/peers.py CONTENDER train.csv test.csv TARGET TASK out.json

CONTENDER is one of
  lightgbm   LightGBM's LGBM{Classifier,Regressor}() with its defaults (string columns
             as pandas categories, which it splits on natively)
  catboost   CatBoost's CatBoost{Classifier,Regressor}() with its defaults (string
             columns as cat_features; it picks its own iteration count and learning rate)
  autogluon  AutoGluon's TabularPredictor, presets medium_quality, tree models only
             (optional: skipped with a note where autogluon.tabular is not installed)
  gbdt       scikit-learn's HistGradientBoosting{Classifier,Regressor}() (native categories)
  linear     LogisticRegression / Ridge on median-imputed standardised numbers and
             one-hot categories

Every contender reads the same CSV files (R's ``rownames`` column dropped, ISO dates
as day numbers) and writes to out.json: accuracy, roc_auc (binary) and log_loss for
classifiers; r2 and rmse for regressions; ``fit_s``, the seconds its fit took. The
caller times the whole process (imports, reading, fitting, scoring) for the
comparison with bigmodel's own processes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CONTENDERS = ("lightgbm", "catboost", "autogluon", "gbdt", "linear")
DATE = r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?Z?)?"


def frames(train, test, target: str):
    """Feature frames: strings as categories, ISO dates as day numbers, no rownames."""
    import pandas as pd

    drop = [target] + [c for c in ("rownames",) if c in train]
    xtr, xte = train.drop(columns=drop).copy(), test.drop(columns=drop).copy()
    cats = []
    for c in xtr.columns:
        # pandas 3 reads strings as its "str" dtype, not object: anything not a number
        if not pd.api.types.is_numeric_dtype(xtr[c]) or pd.api.types.is_bool_dtype(xtr[c]):
            s = xtr[c].dropna().astype(str)
            if len(s) and s.str.fullmatch(DATE).mean() > 0.95:
                for x in (xtr, xte):
                    stamp = pd.to_datetime(x[c], errors="coerce", utc=True)
                    x[c] = (stamp - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400
                continue
            cats.append(c)
    return xtr, xte, cats


def as_categories(xtr, xte, cats: list[str], most: int | None = None) -> None:
    """String columns as pandas categories of the training values (an unseen value is
    missing); past ``most`` values, as ordinal codes (HistGradientBoosting's limit)."""
    import pandas as pd

    for c in cats:
        levels = pd.Index(sorted(xtr[c].dropna().astype(str).unique()))
        for x in (xtr, xte):
            v = x[c].where(x[c].isna(), x[c].astype(str))
            codes = pd.Categorical(v.where(v.isin(levels)), categories=levels)
            if most is not None and len(levels) > most:
                x[c] = pd.Series(codes.codes, index=x.index).astype(float).where(codes.codes >= 0)
            else:
                x[c] = codes


def fit_predict(who: str, xtr, ytr, xte, cats: list[str], task: str, work: Path):
    """(the fitted model's test predictions, its class probabilities or None, its classes)."""
    import numpy as np

    if who == "lightgbm":
        import lightgbm as lgb

        as_categories(xtr, xte, cats)
        cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
        model = cls(verbose=-1, random_state=0).fit(xtr, ytr)
    elif who == "catboost":
        import catboost as cb

        for x in (xtr, xte):
            for c in cats:
                x[c] = x[c].astype(str).where(x[c].notna(), "nan")
        cls = cb.CatBoostRegressor if task == "regression" else cb.CatBoostClassifier
        model = cls(verbose=0, random_seed=0, thread_count=-1, train_dir=str(work / "catboost"))
        model.fit(xtr, ytr, cat_features=cats)
    elif who == "gbdt":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        as_categories(xtr, xte, cats, most=255)
        cls = (
            HistGradientBoostingRegressor
            if task == "regression"
            else HistGradientBoostingClassifier
        )
        model = cls(categorical_features="from_dtype", random_state=0).fit(xtr, ytr)
    elif who == "linear":
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        for x in (xtr, xte):
            for c in cats:
                x[c] = x[c].astype(str)
        nums = [c for c in xtr.columns if c not in cats]
        pre = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
                ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
            ]
        )
        last = Ridge() if task == "regression" else LogisticRegression(max_iter=2000)
        model = make_pipeline(pre, last).fit(xtr, ytr)
    elif who == "autogluon":
        import pandas as pd
        from autogluon.tabular import TabularPredictor

        frame = xtr.assign(__y=ytr.to_numpy())
        problem = {"binary": "binary", "classification": "multiclass"}.get(task, "regression")
        model = TabularPredictor("__y", problem_type=problem, path=str(work / "ag"), verbosity=0)
        model.fit(
            frame,
            presets="medium_quality",
            hyperparameters={"GBM": {}, "CAT": {}, "XGB": {}, "RF": {}, "XT": {}},
        )
        pred = model.predict(xte).to_numpy()
        if task == "regression":
            return pred, None, None
        proba = model.predict_proba(xte)
        return pred, proba.to_numpy(), list(pd.Index(proba.columns).astype(str))
    else:
        raise SystemExit(f"unknown contender {who!r}: one of {', '.join(CONTENDERS)}")
    pred = model.predict(xte)
    if task == "regression":
        return np.asarray(pred, np.float64), None, None
    classes = [str(c) for c in model.classes_]
    return np.asarray(pred).astype(str).reshape(-1), model.predict_proba(xte), classes


def scores(task: str, y, pred, proba, classes) -> dict:
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        log_loss,
        r2_score,
        roc_auc_score,
    )

    if task == "regression":
        y = np.asarray(y, np.float64)
        return {
            "r2": float(r2_score(y, pred)),
            "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        }
    y = np.asarray(y).astype(str)
    pred = np.asarray(pred).astype(str)
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
    }
    seen = np.isin(y, classes)
    if seen.any():
        out["log_loss"] = float(log_loss(y[seen], np.clip(proba[seen], 1e-15, 1), labels=classes))
    if task == "binary" and len(set(y)) == 2:
        out["roc_auc"] = float(roc_auc_score(y == classes[1], proba[:, 1]))
    return out


def main(argv: list[str]) -> int:
    import pandas as pd

    who, train_csv, test_csv, target, task, out = argv
    work = Path(out).parent / f"{who}-work"
    work.mkdir(parents=True, exist_ok=True)
    train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
    train, test = train[train[target].notna()], test[test[target].notna()]
    xtr, xte, cats = frames(train, test, target)
    ytr = train[target] if task == "regression" else train[target].astype(str)
    t0 = time.perf_counter()
    pred, proba, classes = fit_predict(who, xtr, ytr, xte, cats, task, work)
    fit_s = time.perf_counter() - t0
    doc = {"contender": who, "fit_s": fit_s, **scores(task, test[target], pred, proba, classes)}
    Path(out).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
