"""``bigmodel tune DIR --trials N``: a hyperparameter search that survives kill -9.

- **What**: the experiment's ``tune:`` section (config.TuneConfig): a space of
  dotted keys (checked like ``--set``, with did-you-mean), the metric a trial
  optimises (the best value it reached over the epochs; when it is also the
  run's monitored metric, that is the epoch model.keras keeps) and its
  direction.
- **How**: Optuna's TPE sampler; the median pruner on the per-epoch metric.
  Each trial is an ordinary ``bigmodel train`` run in ``runs/`` (in this
  process, one after another), its ``meta.json`` marked with the study, the
  trial number and its parameters. Trial 0 is the experiment's own settings
  (where they lie in the space), so the study's best is never worse than them.
- **Where**: the study is an SQLite file, ``DIR/tune/study.db`` (one file can
  hold several studies: ``--study NAME``, default the experiment's name).
  Every trial's start and end is a committed transaction in it.
- **Restarts**: one ``tune`` process per study at a time (a file lock says so
  plainly). So when a run starts, any trial still marked RUNNING belongs to a
  process that died (kill -9, a power cut): it is marked FAIL, with its run
  folder, and does not count. The command runs trials until the study holds N
  *finished* trials (COMPLETE or PRUNED: Optuna's own meaning of n_trials),
  so a rerun of the same command after a kill ends with exactly N, none lost
  and none repeated. The sampler's seed moves on with every trial already in
  the study, so a restarted search does not draw its first points again.
- **Out**: a live table of trials; at the end the best trial and
  ``DIR/best.yaml``: the experiment with the best parameters, ready for
  ``bigmodel train DIR/best.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bigmodel_cli.config import (
    ExperimentConfig,
    find_config,
    load_experiment,
    read_yaml,
    apply_overrides,
)
from bigmodel_cli.errors import BigmodelError, ConfigError, Interrupted, Pruned

TUNE_DIR = "tune"
STUDY_DB = "study.db"
BEST_YAML = "best.yaml"
MAX_FAILURES_IN_A_ROW = 3


@dataclass
class TrialRow:
    number: int
    state: str  # running | complete | pruned | fail
    params: dict[str, Any]
    value: float | None = None
    run_dir: str | None = None
    epochs: int = 0
    seconds: float | None = None
    reason: str | None = None
    baseline: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "value": self.value,
            "params": self.params,
            "run_dir": self.run_dir,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "reason": self.reason,
            "baseline": self.baseline,
        }


@dataclass
class TuneOutcome:
    study: str
    storage: Path
    metric: str
    direction: str
    trials: list[TrialRow]
    best: TrialRow | None
    best_yaml: Path | None
    ran: int  # trials this command ran
    failed_stale: list[int] = field(
        default_factory=list
    )  # RUNNING trials of a dead process, marked failed

    def as_dict(self) -> dict[str, Any]:
        finished = [t for t in self.trials if t.state in ("complete", "pruned")]
        return {
            "study": self.study,
            "storage": str(self.storage),
            "metric": self.metric,
            "direction": self.direction,
            "finished": len(finished),
            "ran": self.ran,
            "failed_stale": self.failed_stale,
            "trials": [t.as_dict() for t in self.trials],
            "best": self.best.as_dict() if self.best else None,
            "best_value": self.best.value if self.best else None,
            "best_yaml": str(self.best_yaml) if self.best_yaml else None,
        }


def plan(cfg: ExperimentConfig) -> tuple[dict[str, Any], str, str]:
    """(Optuna distributions, metric, direction) of the experiment's tune section."""
    from bigmodel_cli.training.objective import metric_names, monitor_mode

    spec = cfg.tune
    if spec is None or not spec.space:
        raise ConfigError(
            "the experiment has no tune.space to search",
            hint="add to experiment.yaml: tune: {space: {train.learning_rate: {loguniform: "
            "[0.0001, 0.1]}, train.batch_size: {choice: [16, 32, 64]}}}",
        )
    has_val = cfg.data.validation is not None
    names = metric_names(cfg)
    logged = ["loss", *names] + (["val_loss", *[f"val_{m}" for m in names]] if has_val else [])
    metric = spec.metric or ("val_loss" if has_val else "loss")
    if metric not in logged:
        from bigmodel_cli.config import suggest

        extra = (
            ""
            if has_val or not metric.startswith("val_")
            else " (there is no validation split: set data.validation)"
        )
        raise ConfigError(
            f"tune.metric '{metric}' is not logged{extra}", hint=suggest(metric, logged)
        )
    direction = spec.direction or (
        "maximize" if monitor_mode(metric, "auto") == "max" else "minimize"
    )
    return {k: _distribution(k, d) for k, d in spec.space.items()}, metric, direction


def _distribution(key: str, dist: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind, arg = next(iter(dist.items()))
    if kind == "choice":
        bad = [c for c in arg if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ConfigError(
                f"tune.space.{key}: choice values must be numbers, strings or booleans "
                f"(got {bad[0]!r})",
                hint="search a list-valued key through a few named options in your model.py "
                "instead",
            )
        return CategoricalDistribution(arg)
    lo, hi = arg
    if kind in ("int", "logint"):
        return IntDistribution(int(lo), int(hi), log=kind == "logint")
    return FloatDistribution(float(lo), float(hi), log=kind == "loguniform")


def check_values(path: str | Path, overrides: list[str], dists: dict[str, Any]) -> None:
    """Every end of every range and every choice must make a valid config, so
    that no trial fails on a value the space should never have offered."""
    from optuna.distributions import CategoricalDistribution

    for key, d in dists.items():
        values = d.choices if isinstance(d, CategoricalDistribution) else (d.low, d.high)
        for v in values:
            try:
                load_experiment(path, [*overrides, f"{key}={json.dumps(v)}"])
            except ConfigError as e:
                raise ConfigError(
                    f"tune.space.{key}: the value {v!r} is refused: {e.message}", hint=e.hint
                ) from None


def baseline_params(cfg: ExperimentConfig, dists: dict[str, Any]) -> dict[str, Any] | None:
    """The experiment's own value of each key, when every one lies in the space."""
    from optuna.distributions import CategoricalDistribution

    raw = cfg.model_dump(mode="json")
    params = {}
    for key, d in dists.items():
        cur: Any = raw
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(d, CategoricalDistribution):
            if cur not in d.choices:
                return None
        elif not (
            isinstance(cur, (int, float)) and not isinstance(cur, bool) and d.low <= cur <= d.high
        ):
            return None
        params[key] = cur
    return params


def _owner() -> dict[str, Any]:
    return {"host": platform.node(), "pid": os.getpid()}


@contextlib.contextmanager
def _study_lock(tune_dir: Path, study: str):
    import fcntl

    path = tune_dir / f".{study}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(
                f"study '{study}' is being run by another bigmodel tune (pid {holder})",
                hint="wait for it to end, or run a study of another name: --study NAME",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _rows(study) -> list[TrialRow]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            TrialRow(
                t.number,
                t.state.name.lower(),
                dict(t.params),
                t.value if t.state.name == "COMPLETE" else None,
                a.get("run_dir"),
                int(a.get("epochs", len(t.intermediate_values))),
                round(seconds, 1) if seconds is not None else None,
                a.get("reason"),
                bool(a.get("baseline")),
            )
        )
    return rows


def tune(
    path: str | Path,
    trials: int | None = None,
    overrides: list[str] | None = None,
    study_name: str | None = None,
    progress: Any = None,
    train_fn: Callable[..., Any] | None = None,
) -> TuneOutcome:
    """Run the experiment's study until it holds ``trials`` finished trials."""
    overrides = list(overrides or [])
    cfg, base_dir = load_experiment(path, overrides)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, metric, direction = plan(cfg)
    check_values(path, overrides, dists)
    assert cfg.tune is not None
    spec = cfg.tune
    target = trials if trials is not None else spec.trials
    name = study_name or cfg.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise ConfigError(
            f"--study '{name}' is not a study name",
            hint="letters, digits, '_', '.' and '-', e.g. --study lr-search",
        )
    tune_dir = base_dir / TUNE_DIR
    tune_dir.mkdir(exist_ok=True)
    storage_path = tune_dir / STUDY_DB
    if train_fn is None:
        from bigmodel_cli.commands.train import train as train_fn

    signature = {"space": spec.space, "metric": metric, "direction": direction}
    with _study_lock(tune_dir, name):
        study, stale = _open_study(cfg, dists, name, storage_path, signature)
        if progress:
            progress.begin(name, storage_path, metric, direction, target, _rows(study), stale)
        ran, failures = 0, 0
        trial_run = _TrialRun(
            study,
            dists,
            path,
            overrides,
            metric,
            direction,
            progress,
            train_fn,
            name,
            storage_path,
            target,
            study_name,
        )
        while len(study.get_trials(deepcopy=False, states=_finished())) < target:
            failures = trial_run.run(failures)
            ran += 1
        rows = _rows(study)
        complete = [r for r in rows if r.state == "complete" and r.value is not None]
        best = (
            (min if direction == "minimize" else max)(complete, key=lambda r: r.value)
            if complete
            else None
        )
        best_yaml = write_best(path, overrides, best, name, metric) if best else None
    return TuneOutcome(name, storage_path, metric, direction, rows, best, best_yaml, ran, stale)


def _finished() -> tuple:
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _open_study(
    cfg: ExperimentConfig,
    dists: dict[str, Any],
    name: str,
    storage_path: Path,
    signature: dict[str, Any],
):
    """The study in its SQLite file (refused if it searched another space), its baseline
    trial queued; (study, trials of killed processes marked failed)."""
    import optuna

    spec = cfg.tune
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{storage_path}", engine_kwargs={"connect_args": {"timeout": 60}}
    )
    existing = {
        s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if name in existing:
        old = existing[name].user_attrs.get("signature")
        if old is not None and old != json.loads(json.dumps(signature)):
            raise ConfigError(
                f"study '{name}' in {storage_path} searched another space or metric "
                f"({_diff(old, signature)})",
                hint="name a new study with --study NAME, or delete that study's file to start "
                "over",
            )
    n_before = existing[name].n_trials if name in existing else 0
    pruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials,
            n_warmup_steps=spec.warmup_epochs
            if spec.warmup_epochs is not None
            else max(1, cfg.train.epochs // 4),
        )
        if spec.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    # A new seed for every restart: a restarted process must not draw the same first points again.
    sampler = optuna.samplers.TPESampler(
        seed=cfg.seed + n_before, n_startup_trials=spec.startup_trials
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=signature["direction"],
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    study.set_user_attr("signature", signature)
    stale = _fail_stale(study)
    if not any(
        t.user_attrs.get("baseline") and t.state != optuna.trial.TrialState.FAIL
        for t in study.get_trials(deepcopy=False)
    ):
        base = baseline_params(cfg, dists)  # again if a killed process took the first one with it
        if base is not None:
            study.enqueue_trial(base, user_attrs={"baseline": True})
    return study, stale


class _TrialRun:
    """One trial: ask, train with its parameters, tell the study how it ended."""

    def __init__(
        self,
        study,
        dists,
        path,
        overrides,
        metric,
        direction,
        progress,
        train_fn,
        name,
        storage_path,
        target,
        study_name,
    ) -> None:
        self.study, self.dists, self.path, self.overrides, self.metric, self.direction = (
            study,
            dists,
            path,
            overrides,
            metric,
            direction,
        )
        self.progress, self.train_fn, self.name, self.storage_path, self.target, self.study_name = (
            progress,
            train_fn,
            name,
            storage_path,
            target,
            study_name,
        )

    def run(self, failures: int) -> int:
        """Runs one trial; the count of failed trials in a row after it."""
        import optuna

        study, progress, metric = self.study, self.progress, self.metric
        trial = study.ask(self.dists)
        for k, v in _owner().items():
            trial.set_user_attr(k, v)
        params = dict(trial.params)
        if progress:
            progress.trial_begin(trial.number, params)
        sets = [
            "train.inference_copy=none",
            *self.overrides,
            *[f"{k}={json.dumps(v)}" for k, v in params.items()],
        ]
        observer = _TrialObserver(trial, metric, progress)
        t0 = time.perf_counter()
        state, value, reason = "complete", None, None

        def close(st, v=None, why=None, epochs=None):
            if observer.run_dir is not None:
                trial.set_user_attr("run_dir", observer.run_dir)
            trial.set_user_attr("epochs", observer.epochs if epochs is None else epochs)
            if why:
                trial.set_user_attr("reason", why[:500])
            study.tell(trial, v, state=st)

        try:
            outcome = self.train_fn(
                self.path,
                sets,
                observer=observer,
                tags={
                    "tune": {
                        "study": self.name,
                        "trial": trial.number,
                        "params": params,
                        "storage": str(self.storage_path),
                    }
                },
            )
            observer.run_dir = str(outcome.run_dir)
            values = [r[metric] for r in outcome.history if metric in r]
            value = (min if self.direction == "minimize" else max)(values)
            close(optuna.trial.TrialState.COMPLETE, value, epochs=len(outcome.history))
            failures = 0
        except Pruned:
            state = "pruned"
            close(optuna.trial.TrialState.PRUNED)
        except (Interrupted, KeyboardInterrupt):
            close(optuna.trial.TrialState.FAIL, why="interrupted (Ctrl-C / SIGTERM)")
            raise Interrupted(
                f"tune interrupted in trial {trial.number}; the study keeps its "
                f"{len(study.get_trials(deepcopy=False, states=_finished()))} finished "
                "trials",
                resume_command=f"bigmodel tune {self.path} --trials {self.target}"
                + (f" --study {self.name}" if self.study_name else ""),
            ) from None
        except BigmodelError as e:
            state, reason = "fail", str(e)
            close(optuna.trial.TrialState.FAIL, why=reason)
            if (
                not observer.started
            ):  # refused before training began: the experiment is wrong, not this trial
                raise
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise BigmodelError(
                    f"{failures} trials in a row failed; the last: {e}",
                    hint=e.hint
                    or "fix the experiment, then run the same command again: the study continues",
                ) from None
        except Exception:  # a bug: the trial is over all the same
            close(optuna.trial.TrialState.FAIL, why="internal error")
            raise
        finally:
            _clear_session()
        if progress:
            progress.trial_end(
                trial.number,
                state,
                value,
                reason,
                observer.run_dir,
                round(time.perf_counter() - t0, 1),
                _rows(study),
            )
        return failures


def _diff(old: dict, new: dict) -> str:
    new = json.loads(json.dumps(new))
    return (
        "; ".join(
            f"{k}: was {old.get(k)}, now {new.get(k)}" for k in new if old.get(k) != new.get(k)
        )
        or "changed"
    )


def _fail_stale(study) -> list[int]:
    """With the study's lock held, a RUNNING trial is one whose process died."""
    import optuna

    stale = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial = optuna.trial.Trial(study, t._trial_id)
        owner = t.user_attrs.get("pid")
        trial.set_user_attr(
            "reason",
            f"its process (pid {owner}) ended before the trial did (killed?); replaced by "
            "a new trial",
        )
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        stale.append(t.number)
    return stale


def _clear_session() -> None:
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


class _TrialObserver:
    """Reports each epoch's metric to the trial and asks the pruner; passes
    everything on to the live table."""

    def __init__(self, trial, metric: str, progress: Any):
        self.trial, self.metric, self.progress = trial, metric, progress
        self.epochs = 0
        self.run_dir: str | None = None
        self.started = False

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.started = True
        self.run_dir = info.get("run_dir")
        if self.progress:
            self.progress.on_train_begin(info)

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        if self.progress:
            self.progress.on_epoch_begin(epoch, steps)

    def on_steps(self, *a: Any) -> None:
        if self.progress:
            self.progress.on_steps(*a)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.epochs = epoch
        if self.progress:
            self.progress.on_epoch_end(epoch, row)
        value = row.get(self.metric)
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            raise Pruned(
                f"trial {self.trial.number} pruned at epoch {epoch}: {self.metric} "
                f"{value:.4g} is worse than the median of earlier trials"
            )

    def on_saved(self, path: Path) -> None:
        pass

    def on_train_end(self, info: dict[str, Any]) -> None:
        pass


def write_best(
    path: str | Path, overrides: list[str], best: TrialRow, study: str, metric: str
) -> Path:
    """DIR/best.yaml: the experiment file with the overrides and the best
    trial's parameters applied; data paths still resolve (same folder)."""
    import yaml

    from bigmodel_cli.runs import atomic_write_text

    f = find_config(path)
    raw, _ = read_yaml(f)
    apply_overrides(raw, [*overrides, *[f"{k}={json.dumps(v)}" for k, v in best.params.items()]])
    out = f.parent / BEST_YAML
    head = (
        f"# The best trial of study '{study}' (bigmodel tune, {time.strftime('%Y-%m-%d %H:%M')}):\n"
        f"# trial {best.number}, {metric} {best.value:.6g}, run {best.run_dir}\n"
        f"# parameters: {json.dumps(best.params)}\n# train it: bigmodel train {out}\n"
    )
    atomic_write_text(out, head + yaml.safe_dump(raw, sort_keys=False))
    return out
