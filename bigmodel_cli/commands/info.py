"""``bigmodel info``: versions, devices, and the strategy and precision ``train`` would choose
here.
"""

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
        auto = {
            "kind": p.kind,
            "devices": p.devices,
            "reason": p.reason,
            "workers": p.workers,
            "precision": p.precision,
            "precision_reason": p.precision_reason,
        }
        # auto looks again once a model is built: on a CPU, bfloat16 pays for big models only
        small, why = distribute.refine_precision(
            "auto", p.precision, p.precision_reason, p.devices, 0
        )
        if small != p.precision:
            auto["precision_by_model"] = {
                "at_least_macs": distribute.BF16_CPU_MIN_MACS,
                "big": p.precision,
                "small": small,
            }
    except Exception as e:  # a broken TF_CONFIG is worth showing, not crashing on
        auto = {"error": str(e)}
    out: dict[str, Any] = {
        **_versions(),
        "platform": platform.platform(),
        "cpu_threads": os.cpu_count(),
        "cpu_bfloat16": sorted(f for f in distribute.BF16_CPU_FLAGS if f in distribute.cpu_flags())
        or None,
        "gpus": gpu_details,
        "auto_strategy": auto,
    }
    if os.environ.get("TF_CONFIG"):
        out["tf_config"] = os.environ["TF_CONFIG"]
    try:
        from bigmodel_cli.training.cluster import resolve

        job = resolve(os.environ)
    except Exception as e:
        job, out["cluster"] = None, {"error": str(e)}
    if (
        job is not None
    ):  # the workers as the resolver read them from TF_CONFIG, Slurm, SageMaker or JobSet
        out["cluster"] = {
            "source": job.source,
            "workers": job.cluster,
            "task": f"{job.task_type} {job.task_index}",
        }
    return out
