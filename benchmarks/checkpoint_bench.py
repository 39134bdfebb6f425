"""Time-based checkpoints: what one mid-epoch save costs, and so what `train.checkpoint_every`
costs at its default of 10 minutes. Goal (issue 20): at most 2% of the epochs' time.

For each template, in one process: train with a short interval that forces saves
inside every epoch, and count them. The loop times every save (`times["saves"]`), so
one save's cost is that time over the count, measured rather than inferred from two
noisy runs; cost / interval is the share of the epochs' time an interval costs, and
saves / epochs the share this run paid.

    python benchmarks/checkpoint_bench.py [--templates mnist-cnn,regression] [--every 1s]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median  # noqa: E402

SETTINGS = {
    "mnist-cnn": ["train.epochs=2", "data.validation=null"],
    "regression": ["train.epochs=3", "train.steps_per_epoch=400", "train.steps_per_execution=1"],
    "text-classifier": ["train.epochs=2"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", default=",".join(SETTINGS))
    ap.add_argument("--every", default="1s", help="the short interval that forces mid-epoch saves")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["BIGMODEL_INFERENCE_COPY"] = "none"
    from bigmodel_cli import api
    from bigmodel_cli.training import trainer as train_mod

    saves = {"n": 0}
    real = train_mod.save_checkpoint

    def counting(*a, **k):
        saves["n"] += 1
        return real(*a, **k)

    train_mod.save_checkpoint = counting
    print(f"checkpoint cost · {machine()}")
    print(
        f"{'template':<16} {'epochs s':>9} {'saves':>6} {'saving s':>9} {'s a save':>9} "
        f"{'paid':>7} {'at 10m':>8}"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="bigmodel-ckpt-") as tmp:
        for name in args.templates.split(","):
            exp = Path(tmp) / name
            api.init(exp, name)
            per, rows = [], []
            for _ in range(args.repeat):
                saves["n"] = 0
                out = api.train(exp, [*SETTINGS[name], f"train.checkpoint_every={args.every}"])
                per.append(out.times["saves"] / max(saves["n"], 1))
                rows.append((out.times["epochs"], saves["n"], out.times["saves"]))
            epochs_s, n, saving = rows[len(rows) // 2]
            per_save = median(per)
            at_default = per_save / 600.0
            worst = max(worst, at_default)
            print(
                f"{name:<16} {epochs_s:>9.2f} {n:>6} {saving:>9.3f} {per_save:>9.3f} "
                f"{saving / max(epochs_s, 1e-9):>7.1%} {at_default:>8.3%}"
            )
    print(
        f"at the default checkpoint_every: 10m the worst template spends {worst:.3%} of "
        "its epochs saving (goal <= 2%)"
    )
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
