"""What every section of the schema shares: the frozen base model, the tasks with their losses
and metrics, and the column types' spellings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

CONFIG_NAME = "experiment.yaml"


Task = Literal["classification", "binary", "regression"]


# Losses and training metrics each task accepts (first = default).
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("sparse_categorical_crossentropy",),
    "binary": ("binary_crossentropy",),
    "regression": ("mse", "mae", "huber"),
}


LOSS_ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}


TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "binary": ("accuracy",),
    "regression": ("mae", "mse", "rmse"),
}


DEFAULT_METRICS = {"classification": ["accuracy"], "binary": ["accuracy"], "regression": ["mae"]}


OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "adagrad", "nadam", "adamax")


class Strict(BaseModel):
    """Validated once, then immutable (issue 37, item 5): a run's variant of its config
    is a new object (:func:`resolved`), never an assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def settle(model: BaseModel, name: str, value: Any) -> None:
    """A derived default filled in by validation itself, before the object is handed out
    (pydantic's frozen models refuse assignment afterwards)."""
    object.__setattr__(model, name, value)


# Column types. Every feature column has one; those not given in data.columns
# are inferred from the training data (and written into the run's config.yaml).
# date: the format is chosen from the values (ISO, or the one of day-first and
# month-first that reads them all); date_iso, date_dmy, date_mdy say it.
ColumnType = Literal["number", "category", "text", "date", "date_iso", "date_dmy", "date_mdy"]


COLUMN_TYPES: tuple[str, ...] = ColumnType.__args__  # type: ignore[attr-defined]


# the one spelling the schema itself needs; the rest is bigmodel_cli.features.registry
NUMBER_TYPE = "number"
