"""The commands that make things: init (an experiment), templates, train, prepare (the block
cache), runs, tune and submit slurm. Each parses its arguments, calls the API and hands the
outcome to ui.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from bigmodel_cli.errors import BigmodelError


def init(
    target: Path = typer.Argument(..., metavar="DIR", help="Folder to create the experiment in."),
    template: Optional[str] = typer.Option(
        None,
        "--template",
        "-t",
        metavar="NAME",
        help="Template name (see `bigmodel templates`); mnist-cnn without --data.",
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="Your own table (csv/tsv/parquet/jsonl, .gz ok; a path, or an s3://, gs://, hf:// "
        "or https:// URL or glob): infer the task and column types from it.",
    ),
    target_column: Optional[str] = typer.Option(
        None, "--target", metavar="COLUMN", help="With --data: the column to predict."
    ),
    task: Optional[str] = typer.Option(
        None,
        "--task",
        metavar="TASK",
        help="With --data: classification, binary or regression (default: inferred).",
    ),
    copy: bool = typer.Option(
        False, "--copy", help="With --data: copy the file into DIR/data/ (default: reference it)."
    ),
    name: Optional[str] = typer.Option(
        None, help="Experiment name (default: the template's, or the folder's)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
    json_out: bool = typer.Option(
        False, "--json", help="With --data: print what was inferred as JSON."
    ),
) -> None:
    """Create an experiment folder from a template, or from your own table (--data).

    With --data it reads a sample of the table, infers the task and a use for
    every column, says why, and writes an experiment.yaml that trains as it is.

    \b
    Examples:
      bigmodel init exp --template regression
      bigmodel init churn --data churn.csv --target Churn
    """
    from bigmodel_cli import api
    from bigmodel_cli.errors import ConfigError
    from bigmodel_cli.ui import console, tables

    if data is None:
        if target_column or task or copy:
            raise ConfigError(
                "--target, --task and --copy go with --data",
                hint="e.g. bigmodel init exp --data table.csv --target price",
            )
        r = api.init(target, template or "mnist-cnn", force=force, name=name)
        con = console.err_console()
        con.print(f"created {r.path} from template '{r.template}' ({len(r.files)} files)")
        con.print(f"next: bigmodel train {r.path}")
        print(r.path)
        return
    if template is not None:
        raise ConfigError("give --template or --data, not both")
    if not target_column:
        from bigmodel_cli.data.profile import likely_targets

        guesses = likely_targets(data)
        raise ConfigError(
            "--data needs --target COLUMN (the column to predict)",
            hint=(
                f"likely targets: {', '.join(guesses)}; e.g. bigmodel init {target} --data "
                f"{data} --target {guesses[0]}"
                if guesses
                else f"e.g. bigmodel init {target} --data {data} --target COLUMN"
            ),
        )
    r = api.init_data(target, data, target_column, task=task, copy=copy, force=force, name=name)
    if json_out:
        p = r.profile
        console.print_json(
            {
                "path": str(r.path),
                "task": p.task,
                "task_why": p.task_why,
                "rows_read": p.rows_read,
                "columns": [
                    {"name": c.name, "role": c.role, "why": c.why, "missing": c.missing}
                    for c in p.columns
                ],
                "notes": p.notes,
            }
        )
    else:
        tables.profile_table(r)
        print(r.path)


def templates(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the experiment templates."""
    from bigmodel_cli import api
    from bigmodel_cli.ui import console, tables

    items = api.templates()
    if json_out:
        console.print_json([{"name": t.name, "task": t.task, "summary": t.summary} for t in items])
    else:
        tables.templates_table(items)


def train(
    path: Path = typer.Argument(
        ..., metavar="DIR", help="Experiment folder or YAML file; with --resume, a run folder."
    ),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key: dotted.key=value (repeatable).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the run (or the experiment's latest run) from its last checkpoint.",
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config and exit."
    ),
    workers: Optional[int] = typer.Option(
        None,
        "--workers",
        min=1,
        metavar="N",
        help="Start N local worker processes (multi-worker on one machine).",
    ),
    devices: Optional[str] = typer.Option(
        None,
        "--devices",
        metavar="0,1,..",
        help="GPU indices to use, e.g. 0,2 (same as --set train.devices=[0,2]).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train a model; prints the run folder.

    A live table shows each epoch; the best epoch's model is kept as
    runs/NAME-N/model.keras, with checkpoints to --resume from after a kill.

    \b
    Examples:
      bigmodel train exp --set train.epochs=20
      bigmodel train exp/runs/exp-3 --resume
      bigmodel train exp --workers 2
    """
    from bigmodel_cli import api
    from bigmodel_cli.ui import console, progress, summaries

    overrides = list(set_ or [])
    if devices is not None:
        try:
            overrides.append(
                f"train.devices=[{','.join(str(int(d)) for d in devices.split(',') if d.strip())}]"
            )
        except ValueError:
            raise BigmodelError(
                f"--devices '{devices}' is not a list of GPU indices", hint="e.g. --devices 0,2"
            ) from None
    if print_config:
        from bigmodel_cli.config.load import dump

        sys.stdout.write(
            dump(api.resolved_config(path, overrides))
            if not resume
            else dump(api.resumed_config(path, overrides))
        )
        return
    if workers is not None and workers > 1:
        from bigmodel_cli.training.launch import launch_local

        code = launch_local(path, overrides, workers, resume=resume, json_out=json_out)
        raise typer.Exit(code)
    table = progress.TrainProgress()
    try:
        outcome = api.train(path, overrides, observer=table, resume=resume)
    finally:
        table.close()
    if outcome.worker:  # under srun every task shares the terminal: only the chief reports
        console.err_console().print(
            f"{outcome.worker}: done, {outcome.epochs_done} epochs; the chief wrote the run folder"
        )
        return
    if json_out:
        console.print_json(summaries.train_doc(outcome))
    else:
        summaries.train_summary(outcome)
        print(outcome.run_dir)


def prepare(
    path: Path = typer.Argument(..., metavar="DIR", help="Experiment folder or YAML file."),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key: dotted.key=value (repeatable).",
    ),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Convert again even if the cache matches."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Convert the training data into the block cache that streamed training reads."""
    import time

    from bigmodel_cli import api
    from bigmodel_cli.ui import console, progress, summaries

    bar = progress.PredictProgress()
    start = time.perf_counter()
    try:
        d = api.prepare(
            path,
            list(set_ or []),
            progress=lambda done, total, rows: bar(
                "preparing blocks", rows, time.perf_counter() - start, done / max(total, 1)
            ),
            rebuild=rebuild,
        )
    finally:
        bar.close()
    if json_out:
        console.print_json(d)
    else:
        summaries.prepare_summary(d)
        print(d["folder"])


def runs(
    path: Path = typer.Argument(
        ..., metavar="DIR", help="Experiment folder (or its runs/ folder, or one run folder)."
    ),
    sort: Optional[str] = typer.Option(
        None,
        "--sort",
        metavar="COLUMN",
        help="Sort by: name, status, epochs, best, duration, started, trial, or a test metric "
        "(e.g. accuracy); best first where a metric has a direction.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The experiment's runs side by side: status, epochs, best metric, test metrics, duration."""
    from bigmodel_cli.commands.runs import list_runs, sort_rows
    from bigmodel_cli.ui import console, tables

    rows = sort_rows(list_runs(path), sort)
    if json_out:
        console.print_json({"experiment": str(path), "runs": rows})
    else:
        tables.runs_table(rows)


def tune(
    path: Path = typer.Argument(
        ..., metavar="DIR", help="Experiment folder or YAML file with a tune: section."
    ),
    trials: Optional[int] = typer.Option(
        None,
        "--trials",
        "-n",
        min=1,
        metavar="N",
        help="Finished trials the study should hold (default tune.trials); a rerun continues up "
        "to this.",
    ),
    study: Optional[str] = typer.Option(
        None,
        "--study",
        metavar="NAME",
        help="Study name in DIR/tune/study.db (default: the experiment's name).",
    ),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key for every trial: dotted.key=value (repeatable).",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON: the trials with their state and value, and the best."
    ),
) -> None:
    """Search hyperparameters with Optuna (TPE, median pruning);
    survives kill -9: rerun to continue."""
    from bigmodel_cli.commands.tune import tune as run_tune
    from bigmodel_cli.ui import console, progress, summaries

    table = progress.TuneProgress()
    try:
        outcome = run_tune(path, trials, list(set_ or []), study, progress=table)
    finally:
        table.close()
    if json_out:
        console.print_json(outcome.as_dict())
    else:
        summaries.tune_summary(outcome)
        print(outcome.best_yaml or "")


def submit_slurm(
    path: Path = typer.Argument(..., metavar="DIR", help="Experiment folder."),
    nodes: int = typer.Option(1, "--nodes", "-N", min=1, metavar="N", help="Machines."),
    tasks_per_node: int = typer.Option(
        1,
        "--tasks-per-node",
        min=1,
        metavar="N",
        help="Workers on each machine (one a GPU, or one a machine on CPUs).",
    ),
    gpus_per_node: int = typer.Option(
        0, "--gpus-per-node", min=0, metavar="N", help="GPUs to ask for on each machine."
    ),
    time_limit: Optional[str] = typer.Option(
        None,
        "--time",
        metavar="HH:MM:SS",
        help="Time limit, HH:MM:SS; the job requeues itself shortly before it.",
    ),
    partition: Optional[str] = typer.Option(
        None, "--partition", "-p", metavar="NAME", help="Slurm partition (default: the cluster's)."
    ),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key: dotted.key=value (repeatable).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the batch script; submit nothing."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON: the script, the job id and the runs folder."
    ),
) -> None:
    """Write EXP/slurm/train-N.sbatch (srun bigmodel train, requeue near the time limit,
    --resume on requeue) and sbatch it.

    Example: bigmodel submit slurm exp --nodes 2 --tasks-per-node 4 --gpus-per-node 4 --time
    04:00:00
    """
    from bigmodel_cli.commands.submit import SlurmRequest
    from bigmodel_cli.commands.submit import submit_slurm as submit
    from bigmodel_cli.ui import console

    req = SlurmRequest(
        nodes, tasks_per_node, gpus_per_node, time_limit, partition, list(set_ or [])
    )
    outcome = submit(path, req, dry_run=dry_run)
    if json_out:
        console.print_json({**outcome.as_dict(), **({"text": outcome.text} if dry_run else {})})
    elif dry_run:
        sys.stdout.write(outcome.text)
    else:
        console.err_console().print(
            f"submitted slurm job {outcome.job_id} · script {outcome.script} · log "
            f"{outcome.script.parent / (outcome.job_id + '.out')}\nthe run folder appears "
            f"in {outcome.runs_dir} when the job starts; watch it with: bigmodel runs "
            f"{path}"
        )
        print(outcome.job_id)
