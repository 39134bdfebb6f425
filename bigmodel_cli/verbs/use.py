"""The commands that use a trained run: serve, eval, predict, explain, export, and info (what
train would choose here). Each parses its arguments, calls the API and hands the outcome to
ui.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bigmodel_cli.errors import BigmodelError
from bigmodel_cli.verbs.options import (
    Engine,
    OnBadValue,
    PredictBatch,
    PredictColumns,
    PredictCoverage,
    PredictInputs,
    PredictOutput,
    PredictOutputDir,
    PredictRename,
    PredictSets,
)


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
        help="Require 'Authorization: Bearer KEY' on /predict and /metadata (or set "
        "BIGMODEL_API_KEY).",
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
    from bigmodel_cli.inference.serve import serve as run_server
    from bigmodel_cli.ui import console

    con = console.err_console()
    if host not in ("127.0.0.1", "localhost", "::1"):
        con.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine "
            "can use the model" + ("" if api_key else " (no --api-key set)")
        )

    def announce(service, seconds: float) -> None:
        con.print(
            f"serving {service.metadata['run']} ({service.metadata['task']}, "
            f"{service.engine}, loaded in {seconds:.1f}s"
            + (f", {workers} workers" if workers > 1 else "")
            + f") on http://{host}:{port}  ·  docs: http://{host}:{port}/docs  ·  SIGHUP "
            "reloads, Ctrl-C or SIGTERM stops it",
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


def eval_(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder, experiment folder (latest run) or .keras file."
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="Data file or URL (s3://, gs://, hf://, https://) to evaluate on (default: "
        "data.test, else the validation split).",
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
    from bigmodel_cli.model.drawing import Drawer

    drawer = Drawer.start()  # first: matplotlib loads in a child while the rest does
    from bigmodel_cli import api
    from bigmodel_cli.ui import console, tables

    outcome = api.evaluate(
        run, data, unsafe=unsafe, engine=engine, on_bad_value=on_bad_value, drawer=drawer
    )
    if json_out:
        console.print_json(outcome.metrics)
    else:
        tables.eval_table(outcome)


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
    from bigmodel_cli.ui import console, progress, summaries

    if output is None and output_dir is None:
        output = "-"
    if json_out and output == "-":
        raise BigmodelError(
            "--json prints a summary on stdout, so predictions need --output FILE",
            hint="e.g. --output preds.csv --json",
        )
    prog = progress.PredictProgress()
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
            rename=pairs(rename, "--rename"),
            coverage=coverage,
            sets=sets,
        )
    finally:
        prog.close()
    if json_out:
        docs = [summaries.predict_doc(r) for r in results]
        console.print_json(docs[0] if len(docs) == 1 else docs)
    else:
        prog.done(results)


def explain(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="Run folder or experiment folder (latest run)."
    ),
    data: str = typer.Option(
        ...,
        "--data",
        metavar="FILE",
        help="Labelled rows (the run's feature columns and its target): CSV/TSV/Parquet/JSONL "
        "or a URL.",
    ),
    rows: int = typer.Option(
        0,
        "--rows",
        min=0,
        metavar="N",
        help="Also the first N rows' attributions: per column, per token for text, a saliency "
        "map per image.",
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
    from bigmodel_cli.ui import console, tables

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
        console.print_json(out.to_json())
    else:
        tables.explain_table(out)


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
        help="Where to write: a path or an s3://, gs:// or hf:// URL (default: "
        "RUN/export/model.<ext>).",
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
    from bigmodel_cli.ui import console, summaries

    r = api.export(run, format_, output, force=force, unsafe=unsafe)
    if json_out:
        console.print_json(r.__dict__)
    else:
        summaries.export_summary(r)
        print(r.path)
    if not r.parity_ok:
        raise BigmodelError(
            f"the {r.format} export differs from the Keras model by {r.max_abs_diff:.3g}",
            hint="the file was written; do not serve it without checking",
        )


def info(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, devices and the strategy `auto` would pick."""
    from bigmodel_cli import api
    from bigmodel_cli.ui import console, tables

    d = api.info()
    if json_out:
        console.print_json(d)
    else:
        tables.info_table(d, console.out_console())


def pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            from bigmodel_cli.errors import ConfigError

            raise ConfigError(f"{flag} {item}: write FROM=TO", hint=f"e.g. {flag} review=text")
        out[old.strip()] = new.strip()
    return out
