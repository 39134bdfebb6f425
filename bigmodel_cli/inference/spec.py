"""What a run's predictions need and what one predict call answers.

``PredictSpec`` is read once from the run folder and never changed (a per-input spec is a
``dataclasses.replace`` of it); ``PredictResult`` is what ``predict_file`` returns.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class PredictSpec:
    """What the run says about inputs and outputs, and what one command or request
    asked: immutable, so nothing a request or an input file learns reaches another
    (``dataclasses.replace`` makes the variant; :func:`open_blocks` returns the one
    for its input)."""

    features: list[str]
    task: str
    classes: list[Any] | None = None
    id_columns: list[str] = field(default_factory=list)
    keep_columns: list[str] = field(default_factory=list)
    probabilities: bool = False
    missing: str = "error"
    fill_value: float = 0.0
    notes: tuple[str, ...] = ()  # warnings for the user about this input
    # the run's column types (data.columns: column -> category | text | date_*; none: a number)
    column_types: dict[str, str] = field(default_factory=dict)
    tokenizers: dict[str, Any] | None = None  # set: feed ids (the ONNX core); None: raw strings
    rename: dict[str, str] = field(
        default_factory=dict
    )  # predict --rename: the input's column -> the model's
    # a value that is not a number (or a date) in such a column: error | missing
    on_bad_value: str = "error"
    line_of: Callable[[int], int] | None = field(
        default=None, repr=False
    )  # a CSV input's data row -> its line (error path)
    # binary: the probability above which a row is the positive class (train.threshold)
    threshold: float = 0.5
    conformal: Any = None  # model.conformal.Conformal: the run's scores (None: the run kept none)
    coverage: float | None = None  # predict --coverage: sets or intervals at this coverage
    set_method: str = "lac"  # --sets: lac | aps
    target: str | None = None  # eval: the target column, read as text beside the features
    # serve's JSON rows: the id values as sent, echoed back
    sent_ids: dict[str, list[Any]] | None = None

    @functools.cached_property
    def encoded_columns(self) -> list[str]:
        """Features with their own encoder (category, text, date): read as strings."""
        from bigmodel_cli.features import registry

        return registry.encoded_columns(self.column_types, self.features)

    @functools.cached_property
    def numeric(self) -> list[str]:
        from bigmodel_cli.features import registry

        return registry.columns_of(self.column_types, self.features, registry.NUMBER)

    @functools.cached_property
    def date_formats(self) -> dict[str, str]:
        """Date column -> date_iso | date_dmy | date_mdy."""
        from bigmodel_cli.features import registry

        dated = registry.columns_of(self.column_types, self.features, registry.DATE)
        return {c: self.column_types[c] for c in dated}


@dataclass
class PredictResult:
    rows: int
    seconds: float
    rows_per_s: float
    output: str
    input: str
    notes: list[str] = field(default_factory=list)
    engine: str = "tensorflow"
