"""The Python entry points; the CLI only parses arguments and renders results.

Example::

    from bigmodel_cli import api
    api.init("exp", "linear")
    out = api.train("exp", overrides=["train.epochs=10"])
    api.evaluate(out.run_dir).metrics["mse"]
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import ExperimentConfig, apply_overrides, dump, encoded_type, load_experiment, read_yaml, validate
from .dates import is_date
from .errors import ConfigError, DataError, ModelFileError
from .runs import (
    CHECKPOINTS,
    CONFIG_FILE,
    META_FILE,
    METRICS_FILE,
    PLOTS,
    atomic_write_json,
    atomic_write_text,
    create_run,
    read_json,
    resolve_run,
)

# Keys a resumed run may change: they cannot break what was trained so far.
# The strategy may change (a preempted job resumed on other hardware, or with
# --workers): the global batch and the data order stay the same.
RESUMABLE_KEYS = ("train.epochs", "train.early_stopping", "train.checkpoint_every", "train.checkpoint_every_steps", "train.steps_per_execution", "train.distribute", "train.devices", "train.inference_copy", "train.tensorboard")

# Set while a command works on a run folder, so an internal error can log there.
current_run_dir: Path | None = None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------- init


def templates():
    from .scaffold import list_templates

    return list_templates()


def init(target: str | Path, template: str, force: bool = False, name: str | None = None):
    from .scaffold import init_experiment

    return init_experiment(Path(target), template, force=force, name=name)


def init_data(target: str | Path, data: str | Path, target_column: str, task: str | None = None, copy: bool = False, force: bool = False, name: str | None = None):
    """``bigmodel init DIR --data FILE --target COL``: an experiment for the user's own table."""
    from .scaffold import init_from_data

    return init_from_data(Path(target), Path(data), target_column, task=task, copy=copy, force=force, name=name)


# ------------------------------------------------------------------- train


@dataclass
class TrainOutcome:
    run_dir: Path
    model_path: Path | None
    history: list[dict[str, Any]]
    epochs_done: int
    status: str  # completed | already_finished
    plot: Path | None = None
    strategy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    samples_per_s: float = 0.0
    best_epoch: int | None = None
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)  # seconds per phase: import, data, build, epochs, validation, saves, finalize, export, plots
    background: bool = False  # the plot and inference.onnx are being written by a background process (finish.py)


def resolved_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    cfg, _ = load_experiment(path, overrides)
    return cfg


def load_run_config(run_dir: Path) -> ExperimentConfig:
    f = run_dir / CONFIG_FILE
    if not f.is_file():
        raise ModelFileError(f"{run_dir} has no {CONFIG_FILE}; is it a run folder?")
    raw, node = read_yaml(f)
    return validate(raw, str(f), node)


def _run_base_dir(run_dir: Path) -> Path:
    """The experiment folder a run belongs to (data paths are relative to it)."""
    return run_dir.resolve().parent.parent


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {"bigmodel": __version__, "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": numpy.__version__}


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["bigmodel", *sys.argv[1:]]) if sys.argv and "bigmodel" in Path(sys.argv[0]).name else " ".join(map(shlex.quote, sys.argv))


def train(
    path: str | Path,
    overrides: list[str] | None = None,
    observer: Any = None,
    resume: bool = False,
    tags: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train an experiment (or resume a run); returns where everything went.
    ``tags`` go into meta.json (``tune`` marks its trials with them)."""
    global current_run_dir
    from . import distribute

    overrides = list(overrides or [])
    if resume:
        run_dir, cfg, base_dir = _prepare_resume(Path(path), overrides)
    else:
        cfg, base_dir = load_experiment(path, overrides)
        run_dir = None
    if cfg.model.backbone:
        from .pretrained import require_extra

        require_extra()  # before TensorFlow starts: one line and the install command
    import time

    t0 = time.perf_counter()
    distribute.import_tensorflow()
    times = {"import": round(time.perf_counter() - t0, 3)}
    from . import data as data_mod
    from . import train as train_mod

    t0 = time.perf_counter()
    restart = False  # --resume of a run that has no whole checkpoint: it starts again, in its folder
    early_notes: list[str] = []
    if resume:
        assert run_dir is not None
        _, state, early_notes = train_mod.resume_point(run_dir)
        if state is None:
            restart, resume = True, False
            early_notes.append(f"{run_dir} had no {'whole ' if early_notes else ''}checkpoint (it stopped before its first epoch ended): it started again from step 0 in the same folder, with the same config and seed")
    if resume:
        assert run_dir is not None and state is not None
        if state.epoch >= cfg.train.epochs or (state.stopped_early and not _extends(overrides)):
            if not (run_dir / "model.keras").is_file():  # killed while the final model was being written
                _finish_model(run_dir, cfg)
            return TrainOutcome(run_dir, run_dir / "model.keras", state.history, state.epoch, "already_finished", best_epoch=state.best_epoch, stopped_early=state.stopped_early)
        if state.stopped_early:
            state.stopped_early = False
            state.wait = 0
        datasets = data_mod.load_datasets(cfg, base_dir, features=cfg.data.features, classes=cfg.data.classes, tokenizers=run_tokenizers(run_dir, cfg), progress=getattr(observer, "on_prepare", None))
    else:
        datasets = data_mod.load_datasets(cfg, base_dir, progress=getattr(observer, "on_prepare", None))

    times["data"] = round(time.perf_counter() - t0, 3)
    plan = distribute.plan(cfg.train.distribute, distribute.visible_gpus(), os.environ, cfg.train.devices)
    distribute.set_precision(plan, cfg.train.precision)
    if not resume:
        cfg.train.precision = plan.precision  # the run's config.yaml says what it trained with; resume keeps it
    if (resume or restart) and plan.is_chief:  # only the chief: another worker could catch it mid-write
        _sweep_killed_writes(run_dir)
    session: dict[str, Any] = {}

    def open_run() -> Path:
        """Called by fit once every check has passed: nothing is written before."""
        global current_run_dir
        nonlocal run_dir
        if run_dir is None or restart:
            cfg.data.features = datasets.features
            cfg.data.classes = datasets.classes
            cfg.data.columns = dict(datasets.columns)
            if plan.is_chief:
                run_dir = run_dir if restart and run_dir is not None else create_run(base_dir, cfg.name)
            else:
                import tempfile

                run_dir = Path(tempfile.mkdtemp(prefix="bigmodel-worker-"))  # never shown to the user
                (run_dir / CHECKPOINTS).mkdir()
                (run_dir / PLOTS).mkdir()
            atomic_write_text(run_dir / CONFIG_FILE, dump(cfg))
            if datasets.tokenizers:
                from .text import PREPROCESSING_DIR, save_tokenizers

                save_tokenizers(run_dir / PREPROCESSING_DIR, datasets.tokenizers)
            if cfg.model.architecture and ":" in cfg.model.architecture:
                shutil.copyfile(base_dir / cfg.model.architecture.split(":")[0], run_dir / "model.py")
        current_run_dir = run_dir
        session["meta"] = _start_session(run_dir, cfg, plan, resume or restart, datasets, tags)
        return run_dir

    status = "failed"
    try:
        if resume:
            open_run()
        result = train_mod.fit(cfg, base_dir, run_dir if resume else open_run, datasets, observer, strategy_plan=plan, resume=resume)
        status = "completed"
    except BaseException as e:
        from .errors import DiskFull, Interrupted, Pruned

        status = "interrupted" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "pruned" if isinstance(e, Pruned) else "failed"
        if isinstance(e, DiskFull) and run_dir is not None:
            raise _full_while_training(e, run_dir) from None
        plain = _unwritable(e, run_dir) if run_dir is not None else None
        if plain is not None:
            raise plain from None
        raise
    finally:
        if "meta" in session and run_dir is not None:
            try:
                _end_session(run_dir, session["meta"], status, plan.is_chief)
            except OSError:  # a full disk or a vanished folder: the error in flight says more
                pass
    run_dir = result.run_dir
    plot = None
    background = False
    notes: list[str] = []
    if plan.is_chief:
        notes += early_notes
        notes += [f"{n:,} row(s) of {src} have no '{cfg.data.target}' and were left out" for src, n in datasets.dropped]
        if resume and cfg.train.lr_schedule == "cosine" and _extends(overrides) and result.strategy.get("learning_rate", 1.0) == 0.0:
            notes.append("train.lr_schedule: cosine had already decayed the learning rate to 0 over the run's original epochs, so the added epochs did not change the model; train a new run with more epochs instead")
        from . import finish
        from .export import model_sample
        from .streaming import parity_sample

        mode = cfg.train.inference_copy
        t0 = time.perf_counter()
        x = core_x = None
        if mode != "none":
            try:  # the parity check's rows; for a text model, tokenised as predict will
                tokenizers = run_tokenizers(run_dir, load_run_config(run_dir)) if datasets.tokenizers else None
                x, core_x = model_sample(parity_sample(cfg, base_dir, datasets), tokenizers)
            except Exception as e:  # the Keras model is the product; the ONNX copy is an optimisation
                notes.append(f"no inference.onnx ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); predict will use TensorFlow")
                mode = "none"  # the plot is still drawn
        if mode == "background":
            finish.start_background(run_dir, result.history, x, core_x)
            background = True
            plot = run_dir / PLOTS / "training.png"
            times["export"] = round(time.perf_counter() - t0, 3)
        else:
            plot, more, finish_times = finish.run_finish(run_dir, result.history, x, core_x, copy=mode != "none")
            notes += more
            times.update(finish_times)
    times.update(result.times)
    return TrainOutcome(run_dir, result.model_path, result.history, result.epochs_done, "completed", plot, result.strategy, result.seconds, result.samples_per_s, result.best_epoch, result.stopped_early, notes, times, background)


def prepare(path: str | Path, overrides: list[str] | None = None, progress: Any = None, rebuild: bool = False) -> dict[str, Any]:
    """Convert an experiment's training data into the block cache that streamed
    training reads (``data.stream``); reuses a cache whose key still matches.
    Returns what :func:`.blocks.describe` says of it."""
    cfg, base_dir = load_experiment(path, list(overrides or []))
    from . import blocks
    from .streaming import stream_mode

    mode = stream_mode(cfg.model_copy(update={"data": cfg.data.model_copy(update={"stream": True})}), base_dir)
    if mode == "images":
        raise ConfigError(f"data.train {cfg.data.train} is an image folder: its images are decoded as training reads them, nothing to prepare")
    return blocks.describe(blocks.prepare(cfg, base_dir, progress, rebuild=rebuild))


def run_tokenizers(run_dir: Path | None, cfg: ExperimentConfig | None) -> dict[str, Any] | None:
    """The text tokenisers and category encoders a run was trained with (None when it has neither)."""
    if run_dir is None or cfg is None or not any(encoded_type(t) for t in (cfg.data.columns or {}).values()):
        return None
    from .text import PREPROCESSING_DIR, load_tokenizers

    return load_tokenizers(run_dir / PREPROCESSING_DIR)


def _finish_model(run_dir: Path, cfg: ExperimentConfig) -> None:
    """model.keras from the run's best (else last) checkpoint: what the end of training writes."""
    from . import models
    from .train import BEST, LAST, finalize_model

    ckpt = run_dir / CHECKPOINTS
    tokenizers = run_tokenizers(run_dir, cfg)
    finalize_model(ckpt / (BEST if (ckpt / BEST).is_file() else LAST), run_dir / "model.keras", (lambda core: models.with_raw_text(core, tokenizers)) if tokenizers else None)


def _unwritable(e: BaseException, run_dir: Path) -> Exception | None:
    """A run folder that became read-only or vanished while training, as one line."""
    import errno

    from .errors import PathError

    if not isinstance(e, OSError):
        return None
    if not run_dir.exists():
        return PathError(f"the run folder {run_dir} vanished while training ({e.strerror or type(e).__name__}): nothing more can be saved there", hint="check what removed it (a cleanup job, a lost mount); a copy of the folder can be resumed with: bigmodel train COPY --resume")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = e.filename or run_dir
        return PathError(f"cannot write {where}: {'the file system is read-only' if e.errno == errno.EROFS else 'permission denied'}", hint=f"make {run_dir} writable (or copy it somewhere writable), then: bigmodel train {run_dir} --resume")
    return None


def _full_while_training(e: Any, run_dir: Path) -> Exception:
    """A DiskFull during training, with what survived and how to go on."""
    from .errors import DiskFull, human_size
    from .train import resume_point

    ckpt, state, _ = resume_point(run_dir) if run_dir.is_dir() else (None, None, [])
    where = ""
    if state is not None:
        where = f"epoch {state.epoch + 1}, step {state.step}" if state.step else f"after epoch {state.epoch}"
    good = f"the last good checkpoint is {ckpt} ({where})" if ckpt is not None else "no checkpoint was written yet"
    return DiskFull(e.path, e.free, e.needed, f"no space left writing {e.path} ({human_size(e.free)} free, about {human_size(e.needed)} needed); {good}", hint=f"free some space, then: bigmodel train {run_dir} --resume")


def _extends(overrides: list[str]) -> bool:
    return any(o.split("=", 1)[0].strip() == "train.epochs" for o in overrides)


def _prepare_resume(path: Path, overrides: list[str]) -> tuple[Path, ExperimentConfig, Path]:
    ref_dir = path
    if not (path / CONFIG_FILE).is_file():
        ref = resolve_run(path, need_model=False)
        if ref.run_dir is None:
            raise ModelFileError(f"{path} is not a run folder", hint="resume with: bigmodel train runs/<name>-<N> --resume")
        ref_dir = ref.run_dir
    run_dir = ref_dir
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            raise ConfigError(f"--set {o}: '{key}' cannot change when resuming a run (it would break what was trained)", hint=f"on resume you may change: {', '.join(RESUMABLE_KEYS)}; for other changes start a new run")
    raw, node = read_yaml(run_dir / CONFIG_FILE)
    overridden = apply_overrides(raw, overrides)
    cfg = validate(raw, str(run_dir / CONFIG_FILE), node, overridden)
    return run_dir, cfg, _run_base_dir(run_dir)


def _sweep_killed_writes(run_dir: Path) -> None:
    """A kill during an atomic write leaves its temporary file; resuming removes it."""
    from .runs import sweep_temp

    sweep_temp(run_dir)


def _start_session(run_dir: Path, cfg: ExperimentConfig, plan: Any, resume: bool, datasets: Any, tags: dict[str, Any] | None = None) -> dict[str, Any]:
    meta_path = run_dir / META_FILE
    meta = read_json(meta_path) if (resume and meta_path.is_file()) else {
        "name": cfg.name,
        "task": cfg.task,
        "seed": cfg.seed,
        "created": _now(),
        "versions": _versions(),
        "git_commit": _git_commit(_run_base_dir(run_dir)),
        "features": len(datasets.features),
        "classes": datasets.classes,
        "train_rows": len(datasets.train),
        "validation_rows": len(datasets.validation) if datasets.validation else 0,
        "sessions": [],
    }
    meta.update(tags or {})
    meta["strategy"] = {"kind": plan.kind, "devices": plan.devices, "reason": plan.reason, "workers": plan.workers}
    meta["precision"] = {"policy": plan.precision, "reason": plan.precision_reason}
    meta["sessions"].append({"start": _now(), "end": None, "status": "running", "command": _command_line(), "resumed": resume, "host": platform.node(), "pid": os.getpid()})
    if plan.is_chief:
        atomic_write_json(meta_path, meta)
    return meta


def _end_session(run_dir: Path, meta: dict[str, Any], status: str, is_chief: bool) -> None:
    if not is_chief:
        return
    from .train import LAST, read_state

    s = meta["sessions"][-1]
    s["end"] = _now()
    s["status"] = status
    try:
        s["epochs_done"] = read_state(run_dir / CHECKPOINTS / LAST).epoch
    except Exception:
        s["epochs_done"] = 0
    atomic_write_json(run_dir / META_FILE, meta)


# -------------------------------------------------------------------- eval


@dataclass
class EvalOutcome:
    run_dir: Path | None
    data: str
    metrics: dict[str, Any]
    metrics_path: Path | None
    plot: Path | None
    task: str


def _run_and_model(run: str | Path, unsafe: bool = False) -> tuple[Any, ExperimentConfig | None, Any]:
    global current_run_dir
    from . import distribute

    ref = resolve_run(run)
    current_run_dir = ref.run_dir
    cfg = load_run_config(ref.run_dir) if ref.run_dir else None
    distribute.import_tensorflow()
    from .models import load_trained

    model = load_trained(ref.model_path, unsafe=unsafe, user_code_dir=ref.run_dir)
    return ref, cfg, model


def predict_arrays(model: Any, x: Any, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for a split's inputs; a text model's core takes its ids."""
    if not isinstance(x, dict):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    from .models import core_of
    from .text import trim_ids

    core = core_of(model)
    n = len(next(iter(x.values())))
    outs = [np.asarray(core({k: trim_ids(k, v[s : s + batch_size]) for k, v in x.items()}, training=False)) for s in range(0, n, batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)


def evaluate(run: str | Path, data: str | None = None, unsafe: bool = False) -> EvalOutcome:
    from . import data as data_mod
    from .evaluate import metrics_for, plot_confusion

    ref, cfg, model = _run_and_model(run, unsafe)
    if cfg is None:
        raise ModelFileError(f"{ref.model_path} is a bare model file; eval needs its run folder (for the task, columns and classes)", hint="pass the run folder that holds it")
    base = _run_base_dir(ref.run_dir)
    feats, classes = cfg.data.features or [], cfg.data.classes
    tokenizers = run_tokenizers(ref.run_dir, cfg)
    if data is not None:
        split = data_mod.make_split(data_mod.read_table(str(Path(data).resolve()), base, "test", cfg=cfg), cfg, feats, classes, tokenizers=tokenizers)
        label = data
    elif cfg.data.test:
        split = data_mod.make_split(data_mod.read_table(cfg.data.test, base, "test", cfg=cfg), cfg, feats, classes, tokenizers=tokenizers)
        label = cfg.data.test
    else:
        ds = data_mod.load_datasets(cfg, base, features=feats, classes=classes, tokenizers=tokenizers)
        if ds.validation is not None:
            split, label = ds.validation, ds.validation.source
        else:  # no test set, no hold-out: say plainly that this is the training data
            split, label = ds.train, f"{cfg.data.train} (the training data: no data.test or validation split)"
        from .streaming import in_memory

        split = in_memory(split)
    probs = predict_arrays(model, split.x)
    metrics = metrics_for(cfg.task, split.y, probs, classes, cfg.train.loss)
    metrics = {"data": label, "task": cfg.task, **metrics}
    assert ref.run_dir is not None
    path = ref.run_dir / METRICS_FILE
    atomic_write_json(path, metrics)
    plot = None
    if cfg.task != "regression":
        plot = plot_confusion(metrics["confusion_matrix"], metrics["classes"], ref.run_dir / PLOTS / "confusion_matrix.png")
    return EvalOutcome(ref.run_dir, label, metrics, path, plot, cfg.task)


# ----------------------------------------------------------------- predict


def predict(
    run: str | Path,
    inputs: list[str],
    output: str | None = None,
    output_dir: str | None = None,
    probabilities: bool = False,
    columns: list[str] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    input_format: str | None = None,
    unsafe: bool = False,
    progress: Any = None,
    engine: str = "auto",
    on_bad_value: str = "error",
):
    """Predict files. ``engine``: auto (the run's inference.onnx through
    onnxruntime when it matches model.keras, else TensorFlow), onnxruntime,
    or tensorflow. ``on_bad_value``: what a value that is not a number in a
    number column is: ``error`` (exit 2 naming the line and column) or
    ``missing`` (imputed, as an empty cell; under ``data.missing: impute``)."""
    global current_run_dir
    from .predict import make_infer, make_onnx_infer, predict_file

    if engine not in ("auto", "onnxruntime", "tensorflow"):
        raise ConfigError(f"unknown --engine '{engine}'", hint="use auto, onnxruntime or tensorflow")
    if on_bad_value not in ("error", "missing"):
        raise ConfigError(f"unknown --on-bad-value '{on_bad_value}'", hint="use error or missing")
    from .images import expand as image_files

    images = image_files(inputs)
    files = [] if images else expand_inputs(inputs)
    if output_dir is None and len(files) > 1:
        raise ConfigError(f"{len(files)} input files need --output-dir, not --output", hint="e.g. --output-dir preds/")
    ref = resolve_run(run)
    fast = None
    if engine != "tensorflow" and ref.run_dir is not None:
        from .export import inference_copy

        fast = inference_copy(ref.model_path)
    if engine == "onnxruntime" and fast is None:
        raise ModelFileError(f"{ref.run_dir or ref.model_path} has no inference.onnx made from its model.keras", hint="use --engine tensorflow, or retrain (train writes it)")
    if fast is not None:  # no TensorFlow import at all
        current_run_dir = ref.run_dir
        onnx_path, meta = fast
        cfg = load_run_config(ref.run_dir)
        spec = _predict_spec(cfg, None, probabilities, columns or [])
        spec.tokenizers = run_tokenizers(ref.run_dir, cfg)  # the core takes ids: tokenise here
        model, infer, used = None, make_onnx_infer(onnx_path), "onnxruntime"
        batch_size = batch_size or int(meta.get("batch_size") or 8192)
    else:
        ref, cfg, model = _run_and_model(run, unsafe)
        spec = _predict_spec(cfg, model, probabilities, columns or [])
        infer, used = make_infer(model, len(spec.features)), "tensorflow"  # traced once for every file
    spec.on_bad_value = on_bad_value
    if images:  # one row per image: its path and the prediction
        from .predict import predict_images

        if cfg is None or not cfg.data.image_shape:
            raise ConfigError("image inputs need a run trained on images (data.image_shape)", hint="predict a table of pixel columns instead")
        r = predict_images(images, spec, infer, output or "-", cfg.data.image_shape, batch_size=min(batch_size or 256, 4096), force=force)
        r.engine = used
        return [r]
    if output_dir is not None:
        out_dir = Path(output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [str(out_dir / _pred_name(f)) for f in files]
        if not force:
            for t in targets:
                if Path(t).exists():
                    from .errors import PathError

                    raise PathError(f"output {t} exists already", hint="pass --force to overwrite it")
    else:
        targets = [output or "-"]
    results = []
    for f, t in zip(files, targets):
        r = predict_file(model, spec, f, t, infer=infer, batch_size=batch_size, force=force, fmt=input_format, progress=(lambda rows, s, frac, f=f: progress(f, rows, s, frac)) if progress else None)
        r.engine = used
        results.append(r)
    return results


def _pred_name(f: str) -> str:
    name = Path(f).name
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(ext)
    stem, _, suffix = name.rpartition(".")
    return f"{stem or name}.predictions.{suffix if stem else 'csv'}"


def expand_inputs(inputs: list[str]) -> list[str]:
    import glob

    files: list[str] = []
    for pattern in inputs:
        if pattern == "-":
            files.append("-")
            continue
        if any(ch in pattern for ch in "*?["):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise DataError(f"--input '{pattern}' matches no file")
            files += matched
        else:
            if not Path(pattern).exists():
                raise DataError(f"input file {pattern} does not exist")
            files.append(pattern)
    return files


def _predict_spec(cfg: ExperimentConfig | None, model: Any, probabilities: bool, columns: list[str]):
    from .predict import PredictSpec

    if cfg is None:  # a bare .keras file: features are positional x0..xN, regression-like output
        n = int(model.inputs[0].shape[-1])
        out = int(model.outputs[0].shape[-1])
        return PredictSpec(features=[f"x{i}" for i in range(n)], task="classification" if out > 1 else "regression", classes=list(range(out)) if out > 1 else None, keep_columns=columns, probabilities=probabilities)
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
        text_columns=[c for c in (cfg.data.features or []) if encoded_type((cfg.data.columns or {}).get(c))],
        date_formats={c: t for c, t in (cfg.data.columns or {}).items() if is_date(t)},
    )


# ------------------------------------------------------------------ export


def export(run: str | Path, fmt: str, output: str | None = None, force: bool = False, unsafe: bool = False):
    from .export import FORMATS, default_path, export_model, model_sample

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
    ref, cfg, model = _run_and_model(run, unsafe)
    out = Path(output) if output else default_path(ref.run_dir or ref.model_path.parent, fmt)
    tokenizers = run_tokenizers(ref.run_dir, cfg)
    sample = core_x = None
    if cfg is not None:
        from . import data as data_mod

        try:
            base = _run_base_dir(ref.run_dir)
            spec = cfg.data.test or cfg.data.train
            df = data_mod.read_table(spec, base, "test" if cfg.data.test else "train", nrows=64, cfg=cfg)
            sample_cfg = cfg if cfg.data.missing == "impute" else cfg.model_copy(update={"data": cfg.data.model_copy(update={"missing": "drop"})})
            split = data_mod.make_split(df, sample_cfg, list(cfg.data.features or []), cfg.data.classes, with_target=False, tokenizers=tokenizers or {})
            sample, core_x = model_sample(split, tokenizers)
        except Exception:
            if tokenizers:
                raise
            sample = None
    if sample is None or len(sample) == 0:
        n = int(model.inputs[0].shape[-1])
        sample = np.random.default_rng(0).normal(size=(16, n)).astype(np.float32)
    return export_model(model, fmt, out, sample, force=force, core_x=core_x, tokenizers=tokenizers)


# -------------------------------------------------------------------- info


def info() -> dict[str, Any]:
    from . import distribute

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
