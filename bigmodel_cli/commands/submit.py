"""``bigmodel submit slurm EXP``: a batch script in the experiment, handed to ``sbatch``.

The script (``EXP/slurm/train-<N>.sbatch``) runs ``srun bigmodel train EXP`` on the
nodes asked for: one task a worker, which ``training/cluster.py`` reads from the
step's environment. It survives the scheduler:

- ``#SBATCH --requeue`` and ``--signal=B:USR1@<s>``: shortly before the time limit
  the script asks Slurm to requeue the job (``scontrol requeue``). Slurm then sends
  the tasks SIGTERM, and bigmodel saves a checkpoint and stops. A preemption with
  PreemptMode=REQUEUE goes the same way without the signal.
- On the requeued start the chief's run folder is already written to
  ``EXP/slurm/<job id>.run`` (``BIGMODEL_RUN_FILE``): the script runs
  ``srun bigmodel train <run> --resume`` and the run goes on from its last checkpoint.

``EXP/slurm/<job id>.json`` records the submission, so ``bigmodel runs EXP``
shows the job's state (``squeue``) beside its run, or alone while it waits.

Example::

    outcome = submit_slurm(Path("exp"), SlurmRequest(nodes=2, tasks_per_node=1))
    outcome.job_id  # '1234'
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import ConfigError, EnvironmentProblem, PathError

SLURM_DIR = "slurm"
REQUEUE_SIGNAL_S = 120  # seconds before the time limit the script requeues itself


@dataclass
class SlurmRequest:
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    time: str | None = None  # HH:MM:SS, or D-HH:MM:SS
    partition: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class SubmitOutcome:
    script: Path
    text: str
    job_id: str | None  # None on --dry-run
    runs_dir: Path
    command: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "script": str(self.script),
            "job_id": self.job_id,
            "runs_dir": str(self.runs_dir),
            "command": self.command,
        }


def _experiment(path: Path, overrides: list[str]) -> tuple[Path, str]:
    from bigmodel_cli.config.load import load_experiment

    path = Path(path).resolve()
    if not path.exists():
        raise PathError(
            f"{path} does not exist", hint="pass an experiment folder made by `bigmodel init`"
        )
    cfg, _ = load_experiment(
        path, overrides
    )  # the config and the --set must hold before anything is queued
    return (path if path.is_dir() else path.parent), cfg.name


def _check(req: SlurmRequest) -> None:
    if req.time is not None and not re.fullmatch(r"(\d+-)?\d{1,3}:\d{2}:\d{2}", req.time):
        raise ConfigError(
            f"--time {req.time}: not HH:MM:SS",
            hint="e.g. --time 02:00:00 (or 1-00:00:00 for a day)",
        )
    if req.partition is not None and not re.fullmatch(r"[\w.,-]+", req.partition):
        raise ConfigError(f"--partition {req.partition!r}: not a partition name")


def _seconds(limit: str) -> int:
    days, _, rest = limit.rpartition("-")
    h, m, s = (int(v) for v in rest.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def slurm_script(
    exp: Path, name: str, req: SlurmRequest, bigmodel: list[str], when: str, script: Path
) -> str:
    """The batch script's text. Pure, so its every line is tested."""
    _check(req)
    q = shlex.quote
    sets = " ".join(f"--set {q(o)}" for o in req.overrides)
    lines = [
        "#!/bin/bash",
        f"# Written by `bigmodel submit slurm` on {when}. Submit it again with: sbatch "
        f"{q(str(script))}",
        f"#SBATCH --job-name={q('bigmodel-' + name)}",
        f"#SBATCH --nodes={req.nodes}",
        f"#SBATCH --ntasks-per-node={req.tasks_per_node}",
    ]
    if req.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={req.gpus_per_node}")
    if req.time:
        lines.append(f"#SBATCH --time={req.time}")
    if req.partition:
        lines.append(f"#SBATCH --partition={req.partition}")
    signal_s = (
        REQUEUE_SIGNAL_S
        if not req.time
        else max(10, min(REQUEUE_SIGNAL_S, _seconds(req.time) // 10))
    )
    lines += [
        f"#SBATCH --output={q(str(exp / SLURM_DIR))}/%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:USR1@{signal_s}",
        "",
        "set -u",
        f"cd {q(str(exp))}",
        f"BIGMODEL=({' '.join(q(a) for a in bigmodel)})",
        f"export BIGMODEL_RUN_FILE={q(str(exp / SLURM_DIR))}/$SLURM_JOB_ID.run  # the "
        "chief writes its run folder here",
        "# Near the time limit: requeue. Slurm sends the tasks SIGTERM; bigmodel saves a "
        "checkpoint and stops.",
        'trap \'echo "bigmodel: time limit near, requeueing job $SLURM_JOB_ID"; scontrol '
        'requeue "$SLURM_JOB_ID"\' USR1',
        'if [ -s "$BIGMODEL_RUN_FILE" ]; then  # a requeued start: go on with this job\'s run',
        '  srun --kill-on-bad-exit=1 "${BIGMODEL[@]}" train "$(cat "$BIGMODEL_RUN_FILE")" '
        "--resume &",
        "else",
        '  srun --kill-on-bad-exit=1 "${BIGMODEL[@]}" train '
        f"{q(str(exp))}{(' ' + sets) if sets else ''} &",
        "fi",
        "pid=$!",
        'while true; do wait "$pid"; rc=$?; kill -0 "$pid" 2>/dev/null || break; done  # a '
        "trapped signal ends wait early",
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def _next_script(folder: Path) -> Path:
    taken = [
        int(m.group(1))
        for p in folder.glob("train-*.sbatch")
        if (m := re.fullmatch(r"train-(\d+)\.sbatch", p.name))
    ]
    return folder / f"train-{max(taken, default=0) + 1}.sbatch"


def submit_slurm(path: Path, req: SlurmRequest, dry_run: bool = False) -> SubmitOutcome:
    exp, name = _experiment(path, req.overrides)
    bigmodel = [sys.executable, "-m", "bigmodel_cli"]
    folder = exp / SLURM_DIR
    script = _next_script(folder)
    text = slurm_script(
        exp, name, req, bigmodel, dt.datetime.now().isoformat(timespec="seconds"), script
    )
    runs_dir = exp / "runs"
    if dry_run:
        return SubmitOutcome(script, text, None, runs_dir, ["sbatch", "--parsable", str(script)])
    if shutil.which("sbatch") is None:
        raise EnvironmentProblem(
            "sbatch is not on PATH: this machine is not a Slurm login node",
            hint="run on a machine with Slurm's client tools, or --dry-run to see the script",
        )
    folder.mkdir(exist_ok=True)
    script.write_text(text)
    script.chmod(0o755)
    cmd = ["sbatch", "--parsable", str(script)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=exp)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(
            "sbatch did not answer within 60 s", hint="is slurmctld up? try: sinfo"
        ) from None
    if p.returncode:
        said = (p.stderr or p.stdout).strip()
        raise EnvironmentProblem(
            f"sbatch refused the job: {said.splitlines()[-1] if said else f'exit {p.returncode}'}",
            hint=f"the script is {script}; fix the request (partition, time, GPUs) and run: "
            f"sbatch {script}",
        )
    job = p.stdout.strip().split(";")[0]
    record = {
        "job_id": job,
        "scheduler": "slurm",
        "script": str(script),
        "submitted": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "request": {k: v for k, v in req.__dict__.items()},
    }
    (folder / f"{job}.json").write_text(json.dumps(record, indent=1))
    return SubmitOutcome(script, text, job, runs_dir, cmd)


def job_states(ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job still known to it (squeue); {} without Slurm."""
    if not ids or shutil.which("squeue") is None:
        return {}
    try:
        p = subprocess.run(
            ["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1].lower()
    return out


def submitted_jobs(exp: Path) -> list[dict[str, Any]]:
    """The jobs ``submit`` recorded in EXP/slurm/, with their run folder once the chief wrote it."""
    folder = Path(exp) / SLURM_DIR
    jobs = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        run = folder / f"{rec.get('job_id')}.run"
        rec["run_dir"] = run.read_text().strip() if run.is_file() else None
        jobs.append(rec)
    return jobs
