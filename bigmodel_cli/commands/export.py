"""``bigmodel export``: the model as keras, SavedModel, ONNX or TFLite, checked against the Keras
model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_cli.errors import ConfigError
from bigmodel_cli.model.saved import load_run_model, run_base_dir, run_tokenizers


def export(
    run: str | Path, fmt: str, output: str | None = None, force: bool = False, unsafe: bool = False
):
    from bigmodel_cli.model.export import FORMATS, default_path, export_model, model_sample

    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}"
        )
    ref, cfg, model = load_run_model(run, unsafe)
    out = (
        Path(output) if output else default_path(ref.run_dir or ref.model_path.parent, fmt)
    )  # a URL output: below
    tokenizers = run_tokenizers(ref.run_dir, cfg)
    sample = core_x = raw = None
    if cfg is not None:
        from bigmodel_cli.data import tables as data_mod

        try:
            base = run_base_dir(ref.run_dir)
            spec = cfg.data.test or cfg.data.train
            df = data_mod.read_table(
                spec, base, "test" if cfg.data.test else "train", nrows=64, cfg=cfg
            )
            sample_cfg = (
                cfg
                if cfg.data.missing == "impute"
                else cfg.model_copy(
                    update={"data": cfg.data.model_copy(update={"missing": "drop"})}
                )
            )
            split = data_mod.make_split(
                df,
                sample_cfg,
                list(cfg.data.features or []),
                cfg.data.classes,
                with_target=False,
                tokenizers=tokenizers or {},
            )
            sample, core_x = model_sample(split, tokenizers)
            if tokenizers:  # the ONNX graph takes the raw columns: the sample's raw values check it
                raw = {
                    "numeric": [c for c in cfg.data.features or [] if c not in tokenizers],
                    "values": {c: list(split.raw[c]) for c in tokenizers},
                }
        except Exception:
            if tokenizers:
                raise
            sample = None
    if sample is None or len(sample) == 0:
        n = int(model.inputs[0].shape[-1])
        sample = np.random.default_rng(0).normal(size=(16, n)).astype(np.float32)
    from bigmodel_cli.data import remote
    from bigmodel_cli.model.builders import decision_threshold

    metadata = None
    if cfg is not None:
        metadata = {
            "task": cfg.task,
            "classes": cfg.data.classes,
            "features": list(cfg.data.features or []),
        }
        if cfg.task == "binary":
            metadata.update(
                {
                    "positive_class": (cfg.data.classes or [None, None])[1],
                    "threshold": decision_threshold(model),
                }
            )
    if output and remote.is_url(output):  # written and checked locally, then uploaded
        with remote.written_then_uploaded(output, force) as local:
            r = export_model(
                model,
                fmt,
                local,
                sample,
                force=True,
                core_x=core_x,
                tokenizers=tokenizers,
                metadata=metadata,
                raw=raw,
            )
        r.path = output
        return r
    return export_model(
        model,
        fmt,
        out,
        sample,
        force=force,
        core_x=core_x,
        tokenizers=tokenizers,
        metadata=metadata,
        raw=raw,
    )
