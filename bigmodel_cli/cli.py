"""bigmodel: the everyday deep-learning loop from the command line.

One thin function per command; the work happens in :mod:`bigmodel_cli.api`
and the rendering in :mod:`bigmodel_cli.ui`. This module must stay light:
``--help``, ``--version``, ``init`` and ``templates`` never import
TensorFlow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from bigmodel_cli import __version__
from bigmodel_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, BigmodelError, Interrupted

app = typer.Typer(
    name="bigmodel",
    help="Scaffold, train, evaluate, predict and export Keras models.\n\nGlobal flags (anywhere on the line): --verbose shows TensorFlow's logs, --debug shows tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = False

# Options that several commands take, or whose help would stretch a command past a
# screen: declared once, as Typer's Annotated parameters.
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help="auto (the run's inference.onnx via onnxruntime when it matches model.keras, else TensorFlow), onnxruntime or tensorflow.",
    ),
]
OnBadValue = Annotated[
    str,
    typer.Option(
        "--on-bad-value",
        metavar="error|missing",
        help="A value that is not a number in a number column (e.g. 'forty'), or not a date in a date column: error (stop, naming the line and column) or missing (read it like an empty cell).",
    ),
]
PredictInputs = Annotated[
    List[str],
    typer.Option(
        "--input",
        "-i",
        metavar="FILE",
        help="CSV/TSV/Parquet/JSONL file(s), a glob, a URL or URL glob (s3://, gs://, hf://, https://), or - for stdin.",
    ),
]
PredictOutput = Annotated[
    Optional[str],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Output file (.csv, .tsv, .parquet, .jsonl, optionally .gz), an s3://, gs:// or hf:// URL, or - for stdout.",
    ),
]
PredictOutputDir = Annotated[
    Optional[str],
    typer.Option(
        "--output-dir",
        metavar="DIR",
        help="Folder (or s3://, gs://, hf:// prefix) for one output per input.",
    ),
]
PredictColumns = Annotated[
    Optional[str],
    typer.Option(
        "--columns",
        metavar="A,B",
        help="Extra input columns to copy to the output (comma-separated).",
    ),
]
PredictBatch = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        metavar="ROWS",
        help="Rows per inference call (default: chosen for throughput).",
    ),
]
PredictRename = Annotated[
    Optional[List[str]],
    typer.Option(
        "--rename",
        metavar="FROM=TO",
        help="Read the input's column FROM as the model's column TO (repeatable), e.g. --rename review=text.",
    ),
]
PredictCoverage = Annotated[
    Optional[float],
    typer.Option(
        "--coverage",
        metavar="SHARE",
        help="Conformal prediction at this coverage (e.g. 0.9): a classifier adds prediction_set (labels joined by |; its label always among them), a regression lower and upper; from the scores the run kept at training.",
    ),
]
PredictSets = Annotated[
    str,
    typer.Option(
        "--sets",
        metavar="lac|aps",
        help="--coverage on a classifier: lac (the smallest sets) or aps (adaptive prediction sets: larger, closer to the coverage on hard rows).",
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"bigmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Scaffold, train, evaluate, predict and export Keras models."""


# ------------------------------------------------------------------ commands


@app.command()
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
        help="Your own table (csv/tsv/parquet/jsonl, .gz ok; a path, or an s3://, gs://, hf:// or https:// URL or glob): infer the task and column types from it.",
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
    from bigmodel_cli import ui
    from bigmodel_cli.errors import ConfigError

    if data is None:
        if target_column or task or copy:
            raise ConfigError(
                "--target, --task and --copy go with --data",
                hint="e.g. bigmodel init exp --data table.csv --target price",
            )
        r = api.init(target, template or "mnist-cnn", force=force, name=name)
        con = ui.err_console()
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
                f"likely targets: {', '.join(guesses)}; e.g. bigmodel init {target} --data {data} --target {guesses[0]}"
                if guesses
                else f"e.g. bigmodel init {target} --data {data} --target COLUMN"
            ),
        )
    r = api.init_data(target, data, target_column, task=task, copy=copy, force=force, name=name)
    if json_out:
        p = r.profile
        ui.print_json(
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
        ui.profile_table(r)
        print(r.path)


@app.command()
def templates(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the experiment templates."""
    from bigmodel_cli import api
    from bigmodel_cli import ui

    items = api.templates()
    if json_out:
        ui.print_json([{"name": t.name, "task": t.task, "summary": t.summary} for t in items])
    else:
        ui.templates_table(items)


@app.command()
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
    from bigmodel_cli import ui

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
        from bigmodel_cli.config import dump

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
    progress = ui.TrainProgress()
    try:
        outcome = api.train(path, overrides, observer=progress, resume=resume)
    finally:
        progress.close()
    if outcome.worker:  # under srun every task shares the terminal: only the chief reports
        ui.err_console().print(
            f"{outcome.worker}: done, {outcome.epochs_done} epochs; the chief wrote the run folder"
        )
        return
    if json_out:
        ui.print_json(ui.train_doc(outcome))
    else:
        ui.train_summary(outcome)
        print(outcome.run_dir)


@app.command()
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
    from bigmodel_cli import ui

    bar = ui.PredictProgress()
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
        ui.print_json(d)
    else:
        ui.prepare_summary(d)
        print(d["folder"])


@app.command()
def runs(
    path: Path = typer.Argument(
        ..., metavar="DIR", help="Experiment folder (or its runs/ folder, or one run folder)."
    ),
    sort: Optional[str] = typer.Option(
        None,
        "--sort",
        metavar="COLUMN",
        help="Sort by: name, status, epochs, best, duration, started, trial, or a test metric (e.g. accuracy); best first where a metric has a direction.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The experiment's runs side by side: status, epochs, best metric, test metrics, duration."""
    from bigmodel_cli import ui
    from bigmodel_cli.commands.runs import list_runs, sort_rows

    rows = sort_rows(list_runs(path), sort)
    if json_out:
        ui.print_json({"experiment": str(path), "runs": rows})
    else:
        ui.runs_table(rows)


@app.command()
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
        help="Finished trials the study should hold (default tune.trials); a rerun continues up to this.",
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
    """Search hyperparameters with Optuna (TPE, median pruning); survives kill -9: rerun to continue."""
    from bigmodel_cli import ui
    from bigmodel_cli.commands.tune import tune as run_tune

    progress = ui.TuneProgress()
    try:
        outcome = run_tune(path, trials, list(set_ or []), study, progress=progress)
    finally:
        progress.close()
    if json_out:
        ui.print_json(outcome.as_dict())
    else:
        ui.tune_summary(outcome)
        print(outcome.best_yaml or "")


@app.command()
def serve(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder (or experiment folder: its latest run)."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="ADDRESS",
        help="Address to listen on; 0.0.0.0 exposes the server to the network.",
    ),
    port: int = typer.Option(
        8000, "--port", min=1, max=65535, metavar="PORT", help="Port to listen on."
    ),
    api_key: Optional[str] = typer.Option(
        None,
        "--api-key",
        envvar="BIGMODEL_API_KEY",
        metavar="KEY",
        help="Require 'Authorization: Bearer KEY' on /predict and /metadata (or set BIGMODEL_API_KEY).",
    ),
    engine: Engine = "auto",
    max_body_mb: float = typer.Option(
        16.0,
        "--max-body-mb",
        min=0.001,
        metavar="MB",
        help="Largest request body; bigger ones get 413.",
    ),
    max_queue: int = typer.Option(
        256,
        "--max-queue",
        min=1,
        metavar="N",
        help="Requests that may wait for the model; more get 503.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        metavar="N",
        help="Server processes on the one port, each with its own model session.",
    ),
    access_log: str = typer.Option(
        "json",
        "--access-log",
        metavar="json|off",
        help="json: one JSON line a request on stderr (with its X-Request-ID); off: none.",
    ),
) -> None:
    """Serve the run's model over HTTP: /health, /metadata, /predict, /explain (docs at /docs).

    SIGHUP or POST /admin/reload loads the run's newest model without
    dropping a request (RUN an experiment folder: its newest run).
    """
    from bigmodel_cli import ui
    from bigmodel_cli.inference.serve import serve as run_server

    con = ui.err_console()
    if host not in ("127.0.0.1", "localhost", "::1"):
        con.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can use the model"
            + ("" if api_key else " (no --api-key set)")
        )

    def announce(service, seconds: float) -> None:
        con.print(
            f"serving {service.metadata['run']} ({service.metadata['task']}, {service.engine}, loaded in {seconds:.1f}s"
            + (f", {workers} workers" if workers > 1 else "")
            + f") on http://{host}:{port}  ·  docs: http://{host}:{port}/docs  ·  SIGHUP reloads, Ctrl-C or SIGTERM stops it",
            highlight=False,
        )

    run_server(
        run,
        host,
        port,
        api_key,
        engine,
        max_body_mb,
        max_queue,
        announce=announce,
        workers=workers,
        access_log=access_log,
    )


@app.command("eval")
def eval_(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder, experiment folder (latest run) or .keras file."
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="Data file or URL (s3://, gs://, hf://, https://) to evaluate on (default: data.test, else the validation split).",
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print the metrics (what metrics.json or metrics-FILE.json holds) on stdout.",
    ),
    unsafe: bool = typer.Option(
        False, "--unsafe", help="Allow models with Lambda layers (runs code from the file)."
    ),
    engine: Engine = "auto",
    on_bad_value: OnBadValue = "error",
) -> None:
    """Report loss and the task's metrics: predict on the same rows, plus metrics.

    It evaluates on --data, else data.test, else the validation split. The run's own
    data writes metrics.json and plots/; --data FILE writes metrics-FILE.json and
    plots/eval-FILE/ beside them, never over them.

    \b
    Example:
      bigmodel eval exp --data test.csv --json
    """
    from bigmodel_cli import api
    from bigmodel_cli import ui

    outcome = api.evaluate(run, data, unsafe=unsafe, engine=engine, on_bad_value=on_bad_value)
    if json_out:
        ui.print_json(outcome.metrics)
    else:
        ui.eval_table(outcome)


@app.command()
def predict(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder, experiment folder (latest run) or .keras file."
    ),
    input_: PredictInputs = ...,
    output: PredictOutput = None,
    output_dir: PredictOutputDir = None,
    probabilities: bool = typer.Option(
        False, "--probabilities", help="Add one probability column per class."
    ),
    columns: PredictColumns = None,
    batch_size: PredictBatch = None,
    input_format: Optional[str] = typer.Option(
        None, "--input-format", metavar="FORMAT", help="Format of stdin: csv, tsv, parquet, jsonl."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    engine: Engine = "auto",
    on_bad_value: OnBadValue = "error",
    rename: PredictRename = None,
    coverage: PredictCoverage = None,
    sets: PredictSets = "lac",
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow models with Lambda layers."),
) -> None:
    """Predict every row of tables or images, streaming, in order.

    Inputs: CSV/TSV/Parquet/JSONL files, globs ('data/*.csv'), URLs, - for
    stdin, or image files and folders for an image run. Several inputs need
    --output-dir (one output each).

    \b
    Examples:
      bigmodel predict exp --input new.csv --output preds.csv --probabilities
      bigmodel predict exp --input 'batch/*.parquet' --output-dir preds/
      cat new.csv | bigmodel predict exp --input - > preds.csv
      bigmodel predict digits --input photos/ --output digits.csv
      bigmodel predict exp --input new.csv --output preds.csv --coverage 0.9
    """
    from bigmodel_cli import api
    from bigmodel_cli import ui

    if output is None and output_dir is None:
        output = "-"
    if json_out and output == "-":
        raise BigmodelError(
            "--json prints a summary on stdout, so predictions need --output FILE",
            hint="e.g. --output preds.csv --json",
        )
    prog = ui.PredictProgress()
    try:
        results = api.predict(
            run,
            input_,
            output,
            output_dir,
            probabilities,
            [c.strip() for c in columns.split(",") if c.strip()] if columns else [],
            batch_size,
            force,
            input_format,
            unsafe,
            progress=prog,
            engine=engine,
            on_bad_value=on_bad_value,
            rename=_pairs(rename, "--rename"),
            coverage=coverage,
            sets=sets,
        )
    finally:
        prog.close()
    if json_out:
        docs = [ui.predict_doc(r) for r in results]
        ui.print_json(docs[0] if len(docs) == 1 else docs)
    else:
        prog.done(results)


@app.command()
def explain(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder or experiment folder (latest run)."
    ),
    data: str = typer.Option(
        ...,
        "--data",
        metavar="FILE",
        help="Labelled rows (the run's feature columns and its target): CSV/TSV/Parquet/JSONL or a URL.",
    ),
    rows: int = typer.Option(
        0,
        "--rows",
        min=0,
        metavar="N",
        help="Also the first N rows' attributions: per column, per token for text, a saliency map per image.",
    ),
    repeats: int = typer.Option(
        5, "--repeats", min=1, metavar="K", help="Shuffles per column (the spread is over these)."
    ),
    max_rows: int = typer.Option(
        5000,
        "--max-rows",
        min=10,
        metavar="ROWS",
        help="Rows to measure on (a seeded sample of a larger file).",
    ),
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        metavar="NAME",
        help="The metric to measure (default: the run's monitored one, e.g. loss).",
    ),
    engine: Engine = "auto",
    json_out: bool = typer.Option(False, "--json", help="Print the explanation as JSON on stdout."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow models with Lambda layers."),
) -> None:
    """Which columns drive the model: permutation importance per raw column.

    Each column is shuffled across the rows --repeats times and the run's
    monitored metric measured again: how much worse it gets is the column's
    importance (a category or text column counts as one). For an image run
    (a pixel table or a folder of class subfolders), a column is a region of a
    4x4 grid, and --rows N draws each image's saliency map to
    plots/saliency/. Writes explanation.json and plots/importance.png in the
    run folder.

    \b
    Examples:
      bigmodel explain exp --data test.csv
      bigmodel explain exp --data test.csv --rows 5 --json
    """
    from bigmodel_cli import api
    from bigmodel_cli import ui

    out = api.explain(
        run,
        data,
        rows=rows,
        repeats=repeats,
        max_rows=max_rows,
        engine=engine,
        unsafe=unsafe,
        metric=metric,
    )
    if json_out:
        ui.print_json(out.to_json())
    else:
        ui.explain_table(out)


@app.command()
def export(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder, experiment folder (latest run) or .keras file."
    ),
    format_: str = typer.Option(
        "savedmodel", "--format", "-f", metavar="FORMAT", help="keras, savedmodel, onnx or tflite."
    ),
    output: Optional[str] = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Where to write: a path or an s3://, gs:// or hf:// URL (default: RUN/export/model.<ext>).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing export."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow models with Lambda layers."),
) -> None:
    """Export the model for serving and check it against Keras.

    \b
    Example:
      bigmodel export exp --format onnx --output model.onnx
    """
    from bigmodel_cli import api
    from bigmodel_cli import ui

    r = api.export(run, format_, output, force=force, unsafe=unsafe)
    if json_out:
        ui.print_json(r.__dict__)
    else:
        ui.export_summary(r)
        print(r.path)
    if not r.parity_ok:
        raise BigmodelError(
            f"the {r.format} export differs from the Keras model by {r.max_abs_diff:.3g}",
            hint="the file was written; do not serve it without checking",
        )


submit_app = typer.Typer(
    help="Hand a training job to a scheduler: `bigmodel submit slurm EXP`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(submit_app, name="submit")


@submit_app.command("slurm")
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
    """Write EXP/slurm/train-N.sbatch (srun bigmodel train, requeue near the time limit, --resume on requeue) and sbatch it.

    Example: bigmodel submit slurm exp --nodes 2 --tasks-per-node 4 --gpus-per-node 4 --time 04:00:00
    """
    from bigmodel_cli import ui
    from bigmodel_cli.commands.submit import SlurmRequest, submit_slurm as submit

    req = SlurmRequest(
        nodes, tasks_per_node, gpus_per_node, time_limit, partition, list(set_ or [])
    )
    outcome = submit(path, req, dry_run=dry_run)
    if json_out:
        ui.print_json({**outcome.as_dict(), **({"text": outcome.text} if dry_run else {})})
    elif dry_run:
        sys.stdout.write(outcome.text)
    else:
        ui.err_console().print(
            f"submitted slurm job {outcome.job_id} · script {outcome.script} · log {outcome.script.parent / (outcome.job_id + '.out')}\nthe run folder appears in {outcome.runs_dir} when the job starts; watch it with: bigmodel runs {path}"
        )
        print(outcome.job_id)


@app.command()
def info(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, devices and the strategy `auto` would pick."""
    from bigmodel_cli import api
    from bigmodel_cli import ui

    d = api.info()
    if json_out:
        ui.print_json(d)
    else:
        ui.info_table(d, ui.out_console())


# --------------------------------------------------------------------- main


def _log_internal(exc: BaseException) -> Path | None:
    import traceback

    text = "".join(traceback.format_exception(exc))
    from bigmodel_cli import runs as _runs  # light: no TensorFlow at import

    candidates = []
    if _runs.run_worked_on() is not None:
        candidates.append(_runs.run_worked_on() / "error.log")
    candidates.append(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "bigmodel"
        / "last-error.log"
    )
    for p in candidates:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a", encoding="utf-8") as f:
                f.write(f"$ {' '.join(sys.argv)}\n{text}\n")
            return p
        except OSError:
            continue
    return None


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            from bigmodel_cli.errors import ConfigError

            raise ConfigError(f"{flag} {item}: write FROM=TO", hint=f"e.g. {flag} review=text")
        out[old.strip()] = new.strip()
    return out


def plain_help(text: str) -> str:
    """Help as a reader wants it: RUN, not {RUN}; no '<path>' or '<int range>'
    type tags; no '[x>=1]' range notes (the option's text says what it takes)."""
    import re

    text = re.sub(r"\{([A-Z][A-Z0-9_]*)\}", r"\1", text)
    text = re.sub(
        r" <(?:path|str|int|float|int range|float range|list\[str\]|list\[int\]|text|choice)>",
        lambda m: " " * len(m.group(0)),
        text,
    )  # blanks: the columns stay aligned
    text = re.sub(r"; (?:[\d.]+<=)?x(?:>=|<=)[\d.]+(?:<=[\d.]+)?\]", "]", text)
    text = re.sub(r"\s*\[(?:[\d.]+<=)?x(?:>=|<=)[\d.]+\]", "", text)
    return text


def _help(args: list[str]) -> int:
    """Run a --help (or a bare group) and print it through :func:`plain_help`."""
    import contextlib
    import io

    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf):
        try:
            rv = app(args=args, prog_name="bigmodel", standalone_mode=False)
            code = int(rv or 0) if isinstance(rv, int) else 0
        except SystemExit as e:
            code = int(e.code or 0) if isinstance(e.code, int) else 0
        except Exception as e:  # noqa: BLE001  (a usage error: click's own message)
            from typer.exceptions import Exit

            code = e.exit_code if isinstance(e, Exit) else 2
            if not isinstance(e, Exit):
                buf.write((e.format_message() if hasattr(e, "format_message") else str(e)) + "\n")
    sys.stdout.write(plain_help(buf.getvalue()))
    return code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps errors to exit codes (0, 1, 2, 130)."""
    from typer.exceptions import Abort, Exit, TyperException

    global DEBUG
    args = list(sys.argv[1:] if argv is None else argv)
    DEBUG = "--debug" in args
    verbose = "--verbose" in args
    args = [a for a in args if a not in ("--debug", "--verbose")]
    if verbose:
        os.environ["BIGMODEL_VERBOSE"] = "1"
    from bigmodel_cli.runtime import quiet_tensorflow  # light: no TensorFlow import

    quiet_tensorflow(verbose)
    from bigmodel_cli.ui import err_console

    con = err_console()
    if {"-h", "--help"} & set(args) or not args or args == ["submit"]:
        return _help(args)
    from bigmodel_cli import runs as _runs

    _runs.working_in(None)  # nothing of an earlier command in this process
    try:
        rv = app(args=args, prog_name="bigmodel", standalone_mode=False)
        return int(rv or 0) if isinstance(rv, int) else 0
    except Interrupted as e:
        con.print(f"[yellow]interrupted:[/] {e.message}", highlight=False)
        if e.resume_command:
            con.print(f"resume with: [bold]{e.resume_command}[/]", highlight=False)
        return EXIT_INTERRUPTED
    except BigmodelError as e:
        con.print(f"[red]error:[/] {_esc(e.message)}", highlight=False)
        if e.hint:
            con.print(f"[dim]hint:[/] {_esc(e.hint)}", highlight=False)
        if DEBUG:
            import traceback

            traceback.print_exc()
        return e.exit_code
    except Exit as e:
        return e.exit_code
    except Abort:
        return EXIT_INTERRUPTED
    except TyperException as e:  # usage errors from the vendored click
        show = getattr(e, "show", None)
        show() if show else con.print(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        con.print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal bug: one line, traceback to a log
        log = _log_internal(e)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        con.print(f"[red]internal error:[/] {type(e).__name__}: {_esc(first)}", highlight=False)
        if DEBUG:
            import traceback

            traceback.print_exc()
        else:
            con.print(
                f"see {log} for details (or rerun with --debug)"
                if log
                else "rerun with --debug for details"
            )
        return EXIT_INTERNAL


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def run() -> None:
    code = main()
    if "tensorflow" in sys.modules:
        # After TensorFlow has run, Python's own teardown (its thread pools, module
        # finalisers) takes about a second here. Everything the command wrote is
        # already closed and renamed into place, so leave at once.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
