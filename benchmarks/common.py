"""Helpers the benchmarks share: the machine line, medians, a bigmodel run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BIGMODEL = [sys.executable, "-m", "bigmodel_cli"]


def machine() -> str:
    return (
        f"{platform.node()} · {os.cpu_count()} CPU threads · "
        f"{platform.processor() or platform.machine()}"
    )


def median(v: list[float]) -> float:
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def train_template(template: str, exp: Path, sets: list[str], env: dict) -> tuple[dict, dict]:
    """init + train (--json) + eval of a template in fresh processes:
    (train's JSON document, {samples_per_s per epoch, test_accuracy})."""
    subprocess.run(
        [*BIGMODEL, "init", exp, "-t", template], check=True, capture_output=True, env=env
    )
    overrides = [a for s in sets for a in ("--set", s)]
    r = subprocess.run(
        [*BIGMODEL, "train", exp, *overrides, "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    doc = json.loads(r.stdout)
    e = subprocess.run(
        [*BIGMODEL, "eval", doc["run_dir"], "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return doc, {
        "samples_per_s": [row["samples_per_s"] for row in doc["history"]],
        "test_accuracy": json.loads(e.stdout)["accuracy"],
    }
