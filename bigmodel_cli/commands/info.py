"""``bigmodel info``: versions, devices, and the strategy and precision ``train`` would choose here."""

from __future__ import annotations

import os
import platform
from typing import Any

from bigmodel_cli.commands.session import _versions


def info() -> dict[str, Any]:
    from bigmodel_cli.training import strategy as distribute

    tf = distribute.import_tensorflow()
    gpus = distribute.visible_gpus()
    gpu_details = distribute.gpu_details(tf)
    try:
        p = distribute.set_precision(distribute.plan("auto", gpus, os.environ), "auto")
        auto = {"kind": p.kind, "devices": p.devices, "reason": p.reason, "workers": p.workers, "precision": p.precision, "precision_reason": p.precision_reason}
    except Exception as e:  # a broken TF_CONFIG is worth showing, not crashing on
        auto = {"error": str(e)}
    out: dict[str, Any] = {
        **_versions(),
        "platform": platform.platform(),
        "cpu_threads": os.cpu_count(),
        "cpu_bfloat16": sorted(f for f in distribute.BF16_CPU_FLAGS if f in distribute.cpu_flags()) or None,
        "gpus": gpu_details,
        "auto_strategy": auto,
    }
    if os.environ.get("TF_CONFIG"):
        out["tf_config"] = os.environ["TF_CONFIG"]
    slurm = {k: v for k, v in os.environ.items() if k.startswith("SLURM_") and k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_NODELIST", "SLURM_JOB_NODELIST")}
    if slurm:
        out["slurm"] = slurm
    return out
