"""``bigmodel runs DIR``: an experiment's runs side by side.

One row a run folder (``DIR/runs/*/``), read from what the run wrote and
nothing else: ``meta.json`` (sessions, start, tune trial), ``config.yaml``
(epochs planned, the monitored metric), ``history.csv`` (epochs done, the
best monitored value) and ``metrics.json`` (the last ``bigmodel eval``).

Status is the last session's: finished, interrupted, failed or pruned (a
``tune`` trial stopped by the pruner); a session still marked running whose
process is gone (kill -9, a power cut) is shown as interrupted, since the
process that would have said so cannot.

Example::

    rows = list_runs(Path("exp"))
    rows = sort_rows(rows, "best")
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import ConfigError, PathError
from bigmodel_cli.runs import (
    CONFIG_FILE,
    HISTORY_FILE,
    META_FILE,
    METRICS_FILE,
    RUNS_DIR,
    read_json,
)

STATUS = {
    "completed": "finished",
    "interrupted": "interrupted",
    "failed": "failed",
    "pruned": "pruned",
    "running": "running",
}
# A run trained by a Slurm job (bigmodel submit slurm) also shows the job: its id and
# squeue's state (pending, running, ... or ended once Slurm has forgotten it); an
# interrupted run whose job is pending again is "requeued". A queued job with no run
# folder yet has a row of its own.
LOWER_IS_BETTER = ("loss", "mae", "mse", "rmse", "mape", "error")
SORT_KEYS = ("name", "status", "epochs", "best", "duration", "started", "trial")


def list_runs(exp_dir: Path) -> list[dict[str, Any]]:
    """Every run folder of the experiment (or its runs/ folder, or one run folder), oldest first."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise PathError(
            f"{exp_dir} is not a folder", hint="pass an experiment folder made by `bigmodel init`"
        )
    if (exp_dir / META_FILE).is_file():  # one run folder
        return [describe(exp_dir)]
    runs_dir = (
        exp_dir / RUNS_DIR if (exp_dir / RUNS_DIR).is_dir() else exp_dir
    )  # the experiment, or its runs/
    rows = [
        describe(p) for p in sorted(runs_dir.iterdir()) if p.is_dir() and (p / META_FILE).is_file()
    ]
    rows = sorted(rows, key=lambda r: (r["started"] or "", _number(r["name"])))
    return _with_jobs(rows, runs_dir.parent if runs_dir.name == RUNS_DIR else exp_dir)


def _with_jobs(rows: list[dict[str, Any]], exp_dir: Path) -> list[dict[str, Any]]:
    """The Slurm job beside each run it trains (its state from squeue), and a row
    for each job `bigmodel submit` queued that has no run folder yet."""
    from bigmodel_cli.commands.submit import job_states, submitted_jobs

    jobs = submitted_jobs(exp_dir)
    ids = sorted({r["job"]["id"] for r in rows if r.get("job")} | {j["job_id"] for j in jobs})
    if not ids:
        return rows
    states = job_states(ids)
    for r in rows:
        if r.get("job"):
            r["job"]["state"] = states.get(r["job"]["id"], "ended")
            if r["job"]["state"] == "pending" and r["status"] == "interrupted":
                # stopped by the time limit or a preemption; Slurm starts it again
                r["status"] = "requeued"
    have = {r["job"]["id"] for r in rows if r.get("job")}
    for j in jobs:
        if j["job_id"] not in have and j.get("run_dir") is None and j["job_id"] in states:
            rows.append(
                {
                    "name": f"slurm job {j['job_id']}",
                    "run_dir": None,
                    "status": states[j["job_id"]],
                    "epochs": 0,
                    "epochs_planned": None,
                    "monitor": None,
                    "mode": None,
                    "best": None,
                    "best_epoch": None,
                    "test": {},
                    "test_data": None,
                    "duration_s": 0.0,
                    "started": j.get("submitted"),
                    "trial": None,
                    "study": None,
                    "params": None,
                    "job": {"scheduler": "slurm", "id": j["job_id"], "state": states[j["job_id"]]},
                }
            )
    return rows


def _newest_eval(run_dir: Path) -> dict[str, Any]:
    """Without the run's own metrics.json, its newest ``eval --data FILE``
    (metrics-FILE.json), which names its data: what the test columns then show."""
    found = sorted(run_dir.glob("metrics-*.json"), key=lambda p: p.stat().st_mtime)
    doc = _read(found[-1]) if found else None
    if not doc:
        return {}
    return {"data": found[-1].name[len("metrics-") : -len(".json")], **doc}


def _number(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def describe(run_dir: Path) -> dict[str, Any]:
    meta = _read(run_dir / META_FILE) or {}
    sessions = meta.get("sessions") or []
    last = sessions[-1] if sessions else {}
    status = STATUS.get(last.get("status", ""), last.get("status") or "unknown")
    if status == "running" and not _alive(last):
        status = "interrupted"
    cfg = _read_yaml(run_dir / CONFIG_FILE) or {}
    train = cfg.get("train") or {}
    history = _history(run_dir / HISTORY_FILE)
    monitor, mode = _monitor(train, history)
    best = best_epoch = None
    values = [(r[monitor], r.get("epoch")) for r in history if isinstance(r.get(monitor), float)]
    if values:
        best, best_epoch = (min if mode == "min" else max)(values, key=lambda v: v[0])
    metrics = _read(run_dir / METRICS_FILE) or _newest_eval(run_dir)
    test = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    seconds = 0.0
    for s in sessions:
        start, end = _time(s.get("start")), _time(s.get("end"))
        if start and not end:  # still running, or killed: until now, or until its last write
            end = dt.datetime.now(dt.timezone.utc) if status == "running" else _last_write(run_dir)
        if start and end:
            seconds += max(0.0, (end - start).total_seconds())
    tune = meta.get("tune") or None
    return {
        "name": run_dir.name,
        "run_dir": str(run_dir),
        "task": cfg.get("task"),
        "status": status,
        "epochs": len(history),
        "epochs_planned": train.get("epochs"),
        "monitor": monitor,
        "mode": mode,
        "best": best,
        "best_epoch": best_epoch,
        "test": test,
        "test_data": metrics.get("data"),
        "duration_s": round(seconds, 1),
        "started": meta.get("created"),
        "trial": tune.get("trial") if tune else None,
        "study": tune.get("study") if tune else None,
        "params": tune.get("params") if tune else None,
        "job": {"scheduler": "slurm", "id": last["slurm_job"], "state": None}
        if last.get("slurm_job")
        else None,
    }


def sort_rows(rows: list[dict[str, Any]], key: str | None) -> list[dict[str, Any]]:
    """Best first for ``best`` and test metrics (by their direction); else ascending."""
    if not key:
        return rows
    tests = sorted({k for r in rows for k in r["test"]})
    key = _sort_key(key, tests)
    if key not in SORT_KEYS and key not in tests:
        from bigmodel_cli.config.experiment import suggest

        raise ConfigError(
            f"--sort {key}: not a column or a metric of these runs",
            hint=suggest(key, [*SORT_KEYS, *tests]),
        )
    if key == "best":
        present = [r for r in rows if r["best"] is not None]
        modes = {r["mode"] for r in present}
        if len(modes) > 1 or len({r["monitor"] for r in present}) > 1:
            raise ConfigError(
                "--sort best: the runs monitor different metrics",
                hint="sort by a test metric instead (run bigmodel eval on each)",
            )
        sign = -1 if modes == {"max"} else 1
        return sorted(present, key=lambda r: sign * r["best"]) + [
            r for r in rows if r["best"] is None
        ]
    if key in tests:
        sign = 1 if any(w in key for w in LOWER_IS_BETTER) else -1
        present = [r for r in rows if key in r["test"]]
        return sorted(present, key=lambda r: sign * r["test"][key]) + [
            r for r in rows if key not in r["test"]
        ]
    field = {"duration": "duration_s"}.get(key, key)
    if key == "name":
        return sorted(rows, key=lambda r: (r["name"].rsplit("-", 1)[0], _number(r["name"])))
    present = [r for r in rows if r.get(field) is not None]
    return sorted(present, key=lambda r: r[field]) + [r for r in rows if r.get(field) is None]


def _sort_key(key: str, tests: list[str]) -> str:
    """--sort as the table's header spells it: 'test accuracy', 'test_accuracy',
    'best val_loss' and 'time' mean accuracy, best and duration."""
    k = key.strip().lower().replace(" ", "_")
    if k in SORT_KEYS or k in tests:
        return k
    if k.startswith("test_") and k[5:] in tests:
        return k[5:]
    if k.startswith("best"):
        return "best"
    return {"time": "duration", "run": "name"}.get(k, key)


def _monitor(train: dict, history: list[dict]) -> tuple[str, str]:
    from bigmodel_cli.training.objective import monitor_mode

    es = train.get("early_stopping") or {}
    has_val = any(k.startswith("val_") for k in (history[0] if history else {}))
    name = es.get("monitor") or ("val_loss" if has_val else "loss")
    return name, monitor_mode(name, es.get("mode") or "auto")


def _alive(session: dict) -> bool:
    """Whether the session's process still runs (only knowable on its own host)."""
    if session.get("host") != platform.node():
        return True  # another machine's run: trust what it last wrote
    pid = session.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _process_start(pid)
    begun = _time(session.get("start"))
    if started is not None and begun is not None and started > begun.timestamp() + 2:
        return False  # the pid was recycled: this process started after the session did
    return True


def _process_start(pid: int) -> float | None:
    """When a process started (Unix time), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(
            stat.rsplit(")", 1)[1].split()[19]
        )  # field 22: starttime, in clock ticks after boot
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _last_write(run_dir: Path) -> dt.datetime | None:
    times = [
        p.stat().st_mtime
        for p in (
            run_dir / HISTORY_FILE,
            run_dir / META_FILE,
            run_dir / "checkpoints" / "last.keras",
        )
        if p.is_file()
    ]
    return dt.datetime.fromtimestamp(max(times), dt.timezone.utc) if times else None


def _history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                row: dict[str, Any] = {}
                for k, v in raw.items():
                    try:
                        row[k] = int(v) if k == "epoch" else float(v)
                    except (TypeError, ValueError):
                        row[k] = v
                rows.append(row)
    except (OSError, csv.Error):
        return []
    return rows


def _read(path: Path) -> dict | None:
    try:
        d = read_json(path)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _read_yaml(path: Path) -> dict | None:
    import yaml

    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return d if isinstance(d, dict) else None


def _time(s: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(s) if s else None
    except ValueError:
        return None
