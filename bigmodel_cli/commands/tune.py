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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.config.load import find_config, load_experiment, read_yaml, apply_overrides
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.commands.tune_trial import (
    TrialRow,
    TrialRun,
    fail_stale,
    finished_states,
    signature_diff,
    trial_rows,
)

TUNE_DIR = "tune"
STUDY_DB = "study.db"
BEST_YAML = "best.yaml"


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
        from bigmodel_cli.config.experiment import suggest

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
            progress.begin(name, storage_path, metric, direction, target, trial_rows(study), stale)
        ran, failures = 0, 0
        trial_run = TrialRun(
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
        while len(study.get_trials(deepcopy=False, states=finished_states())) < target:
            failures = trial_run.run(failures)
            ran += 1
        rows = trial_rows(study)
        complete = [r for r in rows if r.state == "complete" and r.value is not None]
        best = (
            (min if direction == "minimize" else max)(complete, key=lambda r: r.value)
            if complete
            else None
        )
        best_yaml = write_best(path, overrides, best, name, metric) if best else None
    return TuneOutcome(name, storage_path, metric, direction, rows, best, best_yaml, ran, stale)


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
                f"({signature_diff(old, signature)})",
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
    stale = fail_stale(study)
    if not any(
        t.user_attrs.get("baseline") and t.state != optuna.trial.TrialState.FAIL
        for t in study.get_trials(deepcopy=False)
    ):
        base = baseline_params(cfg, dists)  # again if a killed process took the first one with it
        if base is not None:
            study.enqueue_trial(base, user_attrs={"baseline": True})
    return study, stale


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
