"""TensorBoard logging must not slow training measurably.

Trains two templates with ``train.tensorboard`` on and off, alternating, in
fresh processes, and compares the training loop's own time (``train --json``
times: epochs + saves, the part the event writers touch):

- mnist-cnn defaults: 3 epochs of 113 steps, about 20 step points an epoch;
- regression defaults: 60 short epochs, the worst case for the per-epoch
  writes and flushes (two writers, ~10 scalars an epoch).

    python benchmarks/tensorboard_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine, median  # noqa: E402


def loop_seconds(exp: Path, on: bool, env: dict) -> float:
    r = subprocess.run(
        [
            *BIGMODEL,
            "train",
            str(exp),
            "--set",
            f"train.tensorboard={'true' if on else 'false'}",
            "--set",
            "train.inference_copy=none",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    t = json.loads(r.stdout)["times"]
    return t["epochs"] + t["saves"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    report: dict = {"machine": machine(), "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as tmp:
        for template in ("mnist-cnn", "regression"):
            exp = Path(tmp) / template
            subprocess.run(
                [*BIGMODEL, "init", exp, "-t", template], check=True, capture_output=True, env=env
            )
            loop_seconds(exp, True, env)  # warm the file cache
            on, off = [], []
            for i in range(args.repeat):  # alternate, so drift hits both alike
                for flag in (True, False) if i % 2 == 0 else (False, True):
                    (on if flag else off).append(loop_seconds(exp, flag, env))
            report[template] = {
                "loop_s_tensorboard_on": [round(v, 3) for v in on],
                "loop_s_tensorboard_off": [round(v, 3) for v in off],
                "median_on_over_off": round(median(on) / median(off), 3),
            }
    report["goal: median_on_over_off <= 1.03 on both"] = all(
        report[t]["median_on_over_off"] <= 1.03 for t in ("mnist-cnn", "regression")
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
