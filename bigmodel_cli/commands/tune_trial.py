"""One trial of bigmodel tune: a training run with the trial's parameters, reporting each
epoch's metric to Optuna (which may prune it), and a trial left running by a killed search
marked failed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import BigmodelError, Interrupted, Pruned


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


MAX_FAILURES_IN_A_ROW = 3


def lock_owner() -> dict[str, Any]:
    return {"host": platform.node(), "pid": os.getpid()}


def trial_rows(study) -> list[TrialRow]:
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


def finished_states() -> tuple:
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class TrialRun:
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
        for k, v in lock_owner().items():
            trial.set_user_attr(k, v)
        params = dict(trial.params)
        if progress:
            progress.trial_begin(trial.number, params)
        sets = [
            "train.inference_copy=none",
            *self.overrides,
            *[f"{k}={json.dumps(v)}" for k, v in params.items()],
        ]
        observer = TrialObserver(trial, metric, progress)
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
                f"{len(study.get_trials(deepcopy=False, states=finished_states()))} finished "
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
            clear_session()
        if progress:
            progress.trial_end(
                trial.number,
                state,
                value,
                reason,
                observer.run_dir,
                round(time.perf_counter() - t0, 1),
                trial_rows(study),
            )
        return failures


def signature_diff(old: dict, new: dict) -> str:
    new = json.loads(json.dumps(new))
    return (
        "; ".join(
            f"{k}: was {old.get(k)}, now {new.get(k)}" for k in new if old.get(k) != new.get(k)
        )
        or "changed"
    )


def fail_stale(study) -> list[int]:
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


def clear_session() -> None:
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


class TrialObserver:
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
