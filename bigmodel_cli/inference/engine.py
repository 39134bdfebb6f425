"""One engine chooser for ``predict`` and ``serve``: :func:`open_engine`.

``engine``:

- ``auto``: the run's ``inference.onnx`` through onnxruntime when it was made
  from this very ``model.keras`` (no TensorFlow import at all), else TensorFlow;
- ``onnxruntime``: that copy, or an error if the run has none;
- ``tensorflow``: the Keras model.

Both commands get the same :class:`Engine` (the predict spec, the traced
inference function, the engine's name) and the same errors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import ConfigError, ModelFileError
from bigmodel_cli.model import conformal
from bigmodel_cli.model.saved import load_run_config, load_run_model, run_tokenizers
from bigmodel_cli.runs import RunRef, resolve_run

ENGINES = ("auto", "onnxruntime", "tensorflow")


@dataclass
class Engine:
    ref: RunRef
    cfg: ExperimentConfig | None  # None: a bare .keras file
    model: Any  # the Keras model; None on onnxruntime
    spec: Any  # inference.spec.PredictSpec
    infer: Any  # model inputs -> outputs, traced once
    name: str  # onnxruntime | tensorflow
    batch_size: int | None = None  # the ONNX copy's own batch size, when it has one


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigError(
            f"unknown --engine '{engine}'",
            hint="use " + ", ".join(ENGINES[:-1]) + " or " + ENGINES[-1],
        )


def open_engine(
    run: str | Path,
    engine: str = "auto",
    *,
    unsafe: bool = False,
    probabilities: bool = False,
    columns: list[str] | None = None,
    need_run: str | None = None,
    threads: int | None = None,
) -> Engine:
    """Open RUN for inference. ``need_run`` names a command that cannot work
    from a bare .keras file (serve: it needs the columns and classes)."""
    from bigmodel_cli.inference.predict import make_infer, make_onnx_infer

    check_engine(engine)
    ref = resolve_run(run)
    if need_run and ref.run_dir is None:
        raise ModelFileError(
            f"{run} is a bare model file; {need_run} needs its run folder (for the columns "
            "and classes)",
            hint="pass the run folder that holds it",
        )
    fast = None
    if engine != "tensorflow" and ref.run_dir is not None:
        from bigmodel_cli.model.export import inference_copy

        fast = inference_copy(ref.model_path)
    if engine == "onnxruntime" and fast is None:
        raise ModelFileError(
            f"{ref.run_dir or ref.model_path} has no inference.onnx made from its model.keras",
            hint="use --engine tensorflow, or retrain (train writes it)",
        )
    if fast is not None:
        onnx_path, meta = fast
        cfg = load_run_config(ref.run_dir)
        spec = replace(
            predict_spec(cfg, None, probabilities, columns or []),
            tokenizers=run_tokenizers(ref.run_dir, cfg),  # the ONNX core takes ids: tokenise here
            threshold=float(
                meta.get("threshold") or 0.5
            ),  # the model's, read when the copy was made
            conformal=conformal.load(ref.run_dir),
        )
        return Engine(
            ref,
            cfg,
            None,
            spec,
            make_onnx_infer(onnx_path, threads),
            "onnxruntime",
            int(meta.get("batch_size") or 8192),
        )
    ref, cfg, model = load_run_model(run, unsafe)
    from bigmodel_cli.model.builders import decision_threshold

    spec = replace(
        predict_spec(cfg, model, probabilities, columns or []),
        threshold=decision_threshold(model),
        conformal=conformal.load(ref.run_dir),
    )
    return Engine(ref, cfg, model, spec, make_infer(model, len(spec.features)), "tensorflow")


def with_coverage(
    spec: Any, coverage: float | None, method: str = "lac", where: str = "--coverage"
) -> Any:
    """``spec`` asking for conformal sets or intervals at ``coverage`` (checked)."""
    if coverage is None:
        return spec
    conformal.check_coverage(coverage, where)
    if method not in conformal.METHODS:
        raise ConfigError(
            f"unknown --sets '{method}'",
            hint="use lac (the smallest sets) or aps (adaptive prediction sets)",
        )
    if spec.conformal is None:
        raise ConfigError(
            f"{where} needs the run's conformal scores (preprocessing/conformal.json), and "
            "this run has none",
            hint="train with a validation split (data.validation: 0.2) and train.conformal: "
            "auto; a bare .keras file has none",
        )
    return replace(spec, coverage=float(coverage), set_method=method)


def predict_spec(cfg: ExperimentConfig | None, model: Any, probabilities: bool, columns: list[str]):
    """What a run's predictions read and write; from a bare .keras file, positional features."""
    from bigmodel_cli.inference.spec import PredictSpec

    if cfg is None:  # a bare .keras file: features are positional x0..xN, regression-like output
        n = int(model.inputs[0].shape[-1])
        out = int(model.outputs[0].shape[-1])
        return PredictSpec(
            features=[f"x{i}" for i in range(n)],
            task="classification" if out > 1 else "regression",
            classes=list(range(out)) if out > 1 else None,
            keep_columns=columns,
            probabilities=probabilities,
        )
    if probabilities and cfg.task == "regression":
        raise ConfigError("--probabilities is for classifiers; this run is a regression")
    return PredictSpec(
        features=list(cfg.data.features or []),
        task=cfg.task,
        classes=cfg.data.classes,
        id_columns=list(cfg.data.id_columns),
        keep_columns=[c for c in columns if c not in cfg.data.id_columns],
        probabilities=probabilities,
        missing=cfg.data.missing,
        fill_value=cfg.data.fill_value,
        column_types={
            c: t for c, t in (cfg.data.columns or {}).items() if c in (cfg.data.features or [])
        },
    )
