"""The options several commands share, or whose help would stretch a command past a screen:
declared once, as Typer's Annotated parameters.
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

# Options that several commands take, or whose help would stretch a command past a
# screen: declared once, as Typer's Annotated parameters.
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help="auto (the run's inference.onnx via onnxruntime when it matches model.keras, else "
        "TensorFlow), onnxruntime or tensorflow.",
    ),
]


OnBadValue = Annotated[
    str,
    typer.Option(
        "--on-bad-value",
        metavar="error|missing",
        help="A value that is not a number in a number column (e.g. 'forty'), or not a date in "
        "a date column: error (stop, naming the line and column) or missing (read it like "
        "an empty cell).",
    ),
]


PredictInputs = Annotated[
    List[str],
    typer.Option(
        "--input",
        "-i",
        metavar="FILE",
        help="CSV/TSV/Parquet/JSONL file(s), a glob, a URL or URL glob (s3://, gs://, hf://, "
        "https://), or - for stdin.",
    ),
]


PredictOutput = Annotated[
    Optional[str],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Output file (.csv, .tsv, .parquet, .jsonl, optionally .gz), an s3://, gs:// or "
        "hf:// URL, or - for stdout.",
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
        help="Read the input's column FROM as the model's column TO (repeatable), e.g. --rename "
        "review=text.",
    ),
]


PredictCoverage = Annotated[
    Optional[float],
    typer.Option(
        "--coverage",
        metavar="SHARE",
        help="Conformal prediction at this coverage (e.g. 0.9): a classifier adds "
        "prediction_set (labels joined by |; its label always among them), a regression "
        "lower and upper; from the scores the run kept at training.",
    ),
]


PredictSets = Annotated[
    str,
    typer.Option(
        "--sets",
        metavar="lac|aps",
        help="--coverage on a classifier: lac (the smallest sets) or aps (adaptive prediction "
        "sets: larger, closer to the coverage on hard rows).",
    ),
]
