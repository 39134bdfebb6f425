"""``bigmodel train``: a new run, or ``--resume`` of one; the loop itself is
:mod:`bigmodel_cli.training.trainer`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli import runs
from bigmodel_cli.commands.session import _end_session, _start_session
from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.config.load import (
    apply_overrides,
    dump,
    load_experiment,
    read_yaml,
    resolved,
    validate,
)
from bigmodel_cli.errors import ConfigError, ModelFileError
from bigmodel_cli.model.saved import load_run_config, run_base_dir, run_tokenizers
from bigmodel_cli.runs import (
    CHECKPOINTS,
    CONFIG_FILE,
    PLOTS,
    atomic_write_text,
    create_run,
    resolve_run,
)


RESUMABLE_KEYS = (
    "train.epochs",
    "train.early_stopping",
    "train.checkpoint_every",
    "train.checkpoint_every_steps",
    "train.steps_per_execution",
    "train.distribute",
    "train.devices",
    "train.inference_copy",
    "train.tensorboard",
)


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
    times: dict[str, float] = field(
        default_factory=dict
    )  # seconds per phase: import, data, build, epochs, validation, saves, finalize, export, plots
    # the plot and inference.onnx are being written by a background process (finish.py)
    background: bool = False
    # a multi-worker run's other workers: "worker 1 of 2 (Slurm step)"; the chief's is None
    worker: str | None = None
    # the whole command, from reading the experiment on: ``times`` adds up to it ("other")
    total_seconds: float = 0.0


def train(
    path: str | Path,
    overrides: list[str] | None = None,
    observer: Any = None,
    resume: bool = False,
    tags: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train an experiment (or resume a run); returns where everything went.
    ``tags`` go into meta.json (``tune`` marks its trials with them)."""
    import time

    from bigmodel_cli.training import strategy as distribute

    t_begin = time.perf_counter()

    overrides = list(overrides or [])
    if resume:
        run_dir, cfg, base_dir = _prepare_resume(Path(path), overrides)
    else:
        (cfg, base_dir), run_dir = load_experiment(path, overrides), None
    if cfg.model.backbone:
        from bigmodel_cli.features.backbone import require_extra

        require_extra()  # before TensorFlow starts: one line and the install command
    from bigmodel_cli.data.sources import check_paths

    check_paths(cfg, base_dir)  # a wrong path is one line at once, not after TensorFlow's import
    t0 = time.perf_counter()
    distribute.import_tensorflow()
    times = {"import": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    start = _starting_point(run_dir, cfg, overrides) if resume else _Start(False, False, [])
    if start.finished is not None:
        return start.finished
    datasets = _load(cfg, base_dir, run_dir if start.resume else None, observer)
    times["data"] = round(time.perf_counter() - t0, 3)
    plan = distribute.plan(
        cfg.train.distribute, distribute.visible_gpus(), os.environ, cfg.train.devices
    )
    distribute.set_precision(plan, cfg.train.precision)
    if (
        not start.resume
    ):  # what the data said, and the precision it trains with; resume keeps its own
        cfg = resolved(
            cfg,
            features=datasets.features,
            classes=datasets.classes,
            columns=dict(datasets.columns),
            precision=plan.precision,
        )
    if (
        start.resume or start.restart
    ) and plan.is_chief:  # only the chief: another worker could catch it mid-write
        _sweep_killed_writes(run_dir)
    run = TrainRun(cfg, base_dir, datasets, plan, run_dir, start, tags)
    result = _fit(run, observer)
    cfg = run.cfg  # as the run folder's config.yaml has it (the precision training settled on)
    plot, background, notes = _after_training(run, result, overrides, times)
    times.update(result.times)
    worker = None
    if (
        not plan.is_chief
    ):  # the chief wrote the run; a fresh run's other workers wrote a scratch folder
        import shutil
        import tempfile

        if result.run_dir.name.startswith("bigmodel-worker-") and result.run_dir.parent == Path(
            tempfile.gettempdir()
        ):
            shutil.rmtree(result.run_dir, ignore_errors=True)
        worker = (
            f"{plan.task_type} {plan.task_index} of {plan.workers} "
            f"({plan.reason.split(': ', 1)[-1].rsplit(' with ', 1)[0]})"
        )
    total = time.perf_counter() - t_begin
    times["other"] = round(max(0.0, total - sum(times.values())), 3)
    return TrainOutcome(
        result.run_dir,
        result.model_path,
        result.history,
        result.epochs_done,
        "completed",
        plot,
        result.strategy,
        result.seconds,
        result.samples_per_s,
        result.best_epoch,
        result.stopped_early,
        notes,
        times,
        background,
        worker,
        round(total, 3),
    )


@dataclass
class _Start:
    """Where a train command starts: a fresh run, a resume, or a restart in the same folder."""

    resume: bool
    restart: bool  # --resume of a run that has no whole checkpoint: it starts again, in its folder
    notes: list[str]
    finished: TrainOutcome | None = None  # --resume of a run that is already done


def _starting_point(run_dir: Path, cfg: ExperimentConfig, overrides: list[str]) -> _Start:
    from bigmodel_cli.training.checkpoints import resume_point

    _, state, notes = resume_point(run_dir)
    if state is None:
        notes.append(
            f"{run_dir} had no {'whole ' if notes else ''}checkpoint (it stopped before "
            "its first epoch ended): it started again from step 0 in the same folder, "
            "with the same config and seed"
        )
        return _Start(False, True, notes)
    if state.epoch >= cfg.train.epochs or (state.stopped_early and not _extends(overrides)):
        if not (
            run_dir / "model.keras"
        ).is_file():  # killed while the final model was being written
            _finish_model(run_dir, cfg)
        done = TrainOutcome(
            run_dir,
            run_dir / "model.keras",
            state.history,
            state.epoch,
            "already_finished",
            best_epoch=state.best_epoch,
            stopped_early=state.stopped_early,
        )
        return _Start(True, False, notes, done)
    return _Start(True, False, notes)


def _load(cfg: ExperimentConfig, base_dir: Path, resumed: Path | None, observer: Any):
    """The datasets; a resumed run reads them with its own features, classes and encoders."""
    from bigmodel_cli.data.load import load_datasets

    progress = getattr(observer, "on_prepare", None)
    if resumed is None:
        return load_datasets(cfg, base_dir, progress=progress)
    return load_datasets(
        cfg,
        base_dir,
        features=cfg.data.features,
        classes=cfg.data.classes,
        tokenizers=run_tokenizers(resumed, cfg),
        progress=progress,
    )


class TrainRun:
    """The run this ``train`` makes or resumes: what it learns, each computed once and
    passed down from here (the config as settled, the data, the strategy plan, the run
    folder, the session's record). :meth:`open` is called once the Trainer's build has
    passed every check, so nothing is written before: it creates (or reuses) the folder,
    its config and encoders, and starts the session."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        base_dir: Path,
        datasets: Any,
        plan: Any,
        run_dir: Path | None,
        start: _Start,
        tags: dict[str, Any] | None,
    ) -> None:
        self.cfg, self.base_dir, self.datasets, self.plan, self.run_dir, self.start, self.tags = (
            cfg,
            base_dir,
            datasets,
            plan,
            run_dir,
            start,
            tags,
        )
        self.meta: dict[str, Any] | None = None

    def open(self, cfg: ExperimentConfig | None = None) -> Path:
        """The run folder; ``cfg``: the config as the Trainer settled it (its precision)."""
        self.cfg = cfg = cfg if cfg is not None else self.cfg
        datasets, plan = self.datasets, self.plan
        if self.run_dir is None or self.start.restart:
            if plan.is_chief:
                self.run_dir = (
                    self.run_dir
                    if self.start.restart and self.run_dir is not None
                    else create_run(self.base_dir, cfg.name)
                )
                _tell_run_file(self.run_dir)
            else:
                import tempfile

                self.run_dir = Path(
                    tempfile.mkdtemp(prefix="bigmodel-worker-")
                )  # never shown to the user
                (self.run_dir / CHECKPOINTS).mkdir()
                (self.run_dir / PLOTS).mkdir()
            atomic_write_text(self.run_dir / CONFIG_FILE, dump(cfg))
            if datasets.tokenizers:
                from bigmodel_cli.features.registry import save_tokenizers
                from bigmodel_cli.features.text import PREPROCESSING_DIR

                save_tokenizers(self.run_dir / PREPROCESSING_DIR, datasets.tokenizers)
            if cfg.model.architecture and ":" in cfg.model.architecture:
                shutil.copyfile(
                    self.base_dir / cfg.model.architecture.split(":")[0], self.run_dir / "model.py"
                )
        self.meta = _start_session(
            self.run_dir, cfg, plan, self.start.resume or self.start.restart, datasets, self.tags
        )
        return self.run_dir


def _fit(run: TrainRun, observer: Any):
    """The Trainer's fit, with the session's end written and faults turned into one line."""
    from bigmodel_cli.errors import DiskFull, Interrupted, Pruned
    from bigmodel_cli.training import trainer

    status = "failed"
    try:
        resume = run.start.resume
        if resume:  # the folder is there: the session starts before the checkpoint is read
            run.open()
        t = trainer.Trainer(run.cfg, run.base_dir, run.datasets, observer, run.plan)
        t.build(resume, run.run_dir)
        # every check has passed: only now is a new folder made, from the settled config
        run_dir = run.run_dir if resume else run.open(t.cfg)
        assert run_dir is not None
        result = t.fit(run_dir, resume)
        status = "completed"
        return result
    except BaseException as e:
        status = (
            "interrupted"
            if isinstance(e, (Interrupted, KeyboardInterrupt))
            else "pruned"
            if isinstance(e, Pruned)
            else "failed"
        )
        run_dir = run.run_dir
        runs.tag_run(e, run_dir)  # an internal error is logged in the run folder
        if isinstance(e, DiskFull) and run_dir is not None:
            raise _full_while_training(e, run_dir) from None
        plain = _unwritable(e, run_dir) if run_dir is not None else None
        if plain is not None:
            raise plain from None
        raise
    finally:
        if run.meta is not None and run.run_dir is not None:
            try:
                _end_session(run.run_dir, run.meta, status, run.plan.is_chief)
            except OSError:  # a full disk or a vanished folder: the error in flight says more
                pass


def _after_training(
    run: TrainRun, result: Any, overrides: list[str], times: dict[str, float]
) -> tuple[Path | None, bool, list[str]]:
    """The chief's notes, plot and inference copy (in the background by
    default): (plot, background, notes)."""
    cfg, base_dir, datasets, plan, start = run.cfg, run.base_dir, run.datasets, run.plan, run.start
    import time

    if not plan.is_chief:
        return None, False, []
    run_dir = result.run_dir
    notes = list(start.notes)
    notes += [
        f"{n:,} row(s) of {src} have no '{cfg.data.target}' and were left out"
        for src, n in datasets.dropped
    ]
    notes += [
        line for tok in (datasets.tokenizers or {}).values() for line in getattr(tok, "chosen", [])
    ]  # data.text auto settings
    if (
        start.resume
        and cfg.train.lr_schedule == "cosine"
        and _extends(overrides)
        and result.strategy.get("learning_rate", 1.0) == 0.0
    ):
        notes.append(
            "train.lr_schedule: cosine had already decayed the learning rate to 0 over the "
            "run's original epochs, so the added epochs did not change the model; train a "
            "new run with more epochs instead"
        )
    from bigmodel_cli.data.streaming import parity_sample
    from bigmodel_cli.model.export import model_sample
    from bigmodel_cli.training import finish

    mode = cfg.train.inference_copy
    t0 = time.perf_counter()
    x = core_x = None
    if mode != "none":
        try:  # the parity check's rows; for a text model, tokenised as predict will
            tokenizers = (
                run_tokenizers(run_dir, load_run_config(run_dir)) if datasets.tokenizers else None
            )
            x, core_x = model_sample(parity_sample(cfg, base_dir, datasets), tokenizers)
        except Exception as e:  # the Keras model is the product; the ONNX copy is an optimisation
            notes.append(
                f"no inference.onnx ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:160] if str(e) else ''}); predict will use "
                "TensorFlow"
            )
            mode = "none"  # the plot is still drawn
    if mode == "background":
        finish.start_background(run_dir, result.history, x, core_x, best_epoch=result.best_epoch)
        times["export"] = round(time.perf_counter() - t0, 3)
        return run_dir / PLOTS / "training.png", True, notes
    plot, more, finish_times = finish.run_finish(
        run_dir, result.history, x, core_x, copy=mode != "none", best_epoch=result.best_epoch
    )
    times.update(finish_times)
    return plot, False, notes + more


def _finish_model(run_dir: Path, cfg: ExperimentConfig) -> None:
    """model.keras from the run's best (else last) checkpoint: what the end of training writes."""
    from bigmodel_cli.model import inputs
    from bigmodel_cli.training.checkpoints import BEST, LAST, finalize_model

    ckpt = run_dir / CHECKPOINTS
    tokenizers = run_tokenizers(run_dir, cfg)
    finalize_model(
        ckpt / (BEST if (ckpt / BEST).is_file() else LAST),
        run_dir / "model.keras",
        (lambda core: inputs.with_raw_text(core, tokenizers)) if tokenizers else None,
    )


def _unwritable(e: BaseException, run_dir: Path) -> Exception | None:
    """A run folder that became read-only or vanished while training, as one line."""
    import errno

    from bigmodel_cli.errors import PathError

    if not isinstance(e, OSError):
        return None
    if not run_dir.exists():
        return PathError(
            f"the run folder {run_dir} vanished while training "
            f"({e.strerror or type(e).__name__}): nothing more can be saved there",
            hint="check what removed it (a cleanup job, a lost mount); a copy of the folder can "
            "be resumed with: bigmodel train COPY --resume",
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        where = e.filename or run_dir
        return PathError(
            f"cannot write {where}: "
            f"{'the file system is read-only' if e.errno == errno.EROFS else 'permission denied'}",
            hint=f"make {run_dir} writable (or copy it somewhere writable), then: bigmodel "
            f"train {run_dir} --resume",
        )
    return None


def _full_while_training(e: Any, run_dir: Path) -> Exception:
    """A DiskFull during training, with what survived and how to go on."""
    from bigmodel_cli.errors import DiskFull, human_size
    from bigmodel_cli.training.checkpoints import resume_point

    ckpt, state, _ = resume_point(run_dir) if run_dir.is_dir() else (None, None, [])
    where = ""
    if state is not None:
        where = (
            f"epoch {state.epoch + 1}, step {state.step}"
            if state.step
            else f"after epoch {state.epoch}"
        )
    good = (
        f"the last good checkpoint is {ckpt} ({where})"
        if ckpt is not None
        else "no checkpoint was written yet"
    )
    return DiskFull(
        e.path,
        e.free,
        e.needed,
        f"no space left writing {e.path} ({human_size(e.free)} free, about "
        f"{human_size(e.needed)} needed); {good}",
        hint=f"free some space, then: bigmodel train {run_dir} --resume",
    )


def _extends(overrides: list[str]) -> bool:
    return any(o.split("=", 1)[0].strip() == "train.epochs" for o in overrides)


def _prepare_resume(path: Path, overrides: list[str]) -> tuple[Path, ExperimentConfig, Path]:
    ref_dir = path
    if not (path / CONFIG_FILE).is_file():
        ref = resolve_run(path, need_model=False)
        if ref.run_dir is None:
            raise ModelFileError(
                f"{path} is not a run folder",
                hint="resume with: bigmodel train runs/<name>-<N> --resume",
            )
        ref_dir = ref.run_dir
    run_dir = ref_dir
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            raise ConfigError(
                f"--set {o}: '{key}' cannot change when resuming a run (it would break "
                "what was trained)",
                hint=f"on resume you may change: {', '.join(RESUMABLE_KEYS)}; for other changes "
                "start a new run",
            )
    raw, node = read_yaml(run_dir / CONFIG_FILE)
    overridden = apply_overrides(raw, overrides)
    cfg = validate(raw, str(run_dir / CONFIG_FILE), node, overridden)
    return run_dir, cfg, run_base_dir(run_dir)


def _tell_run_file(run_dir: Path) -> None:
    """A batch script asks where the run went (BIGMODEL_RUN_FILE, commands/submit.py),
    so a requeued job resumes that run instead of starting another."""
    target = os.environ.get("BIGMODEL_RUN_FILE")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(target), str(Path(run_dir).resolve()) + "\n")


def _sweep_killed_writes(run_dir: Path) -> None:
    """A kill during an atomic write leaves its temporary file; resuming removes it."""
    from bigmodel_cli.runs import sweep_temp

    sweep_temp(run_dir)
