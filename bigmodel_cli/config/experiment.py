"""The whole experiment.yaml: its sections, and the checks that need more than one of them (a
loss that fits the task, a column that is not two things at once).
"""

from __future__ import annotations

import difflib
import math

from pydantic import BaseModel, Field, model_validator

from bigmodel_cli.config.base import (
    DEFAULT_METRICS,
    LOSS_ALIASES,
    NUMBER_TYPE,
    TASK_LOSSES,
    TASK_METRICS,
    Strict,
    Task,
    settle,
)
from bigmodel_cli.config.data import DataConfig
from bigmodel_cli.config.train import ModelConfig, TrainConfig, TuneConfig
from bigmodel_cli.errors import ConfigError


class ExperimentConfig(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the experiment's name: runs are runs/<name>-<N>; letters, digits, '_', "
        "'.', '-'",
    )
    task: Task = Field(
        description="classification (softmax over classes), binary (one sigmoid) or regression"
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**31 - 1,
        description="seeds weights, splits and data order: the same seed on CPU gives the same "
        "history",
    )
    data: DataConfig = Field(description="where the rows come from and how columns are read")
    model: ModelConfig = Field(
        description="the network: a built-in architecture, layers, model.py:build, or a backbone"
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="the training loop: epochs, batch, optimizer, strategy, checkpoints",
    )
    tune: TuneConfig | None = Field(None, description="the search space of bigmodel tune (Optuna)")

    @model_validator(mode="after")
    def _cross(self) -> "ExperimentConfig":
        for key in self.tune.space if self.tune is not None else {}:
            check_key(key.split("."), f"tune.space: {key}")  # the schema knows the key
        self._cross_train()
        self._cross_columns()
        task, d = self.task, self.data
        if (
            d.image_shape is not None
            and d.features is not None
            and math.prod(d.image_shape) != len(d.features)
        ):
            raise CrossError(
                "data.image_shape",
                f"image_shape {d.image_shape} holds {math.prod(d.image_shape)} values but "
                f"{len(d.features)} feature columns are listed",
            )
        if d.normalize_target and task != "regression":
            raise CrossError(
                "data.normalize_target", f"normalize_target is for regression, not task '{task}'"
            )
        if d.classes is not None:
            if task == "regression":
                raise CrossError("data.classes", "a regression task has no classes")
            if task == "binary" and len(d.classes) != 2:
                raise CrossError(
                    "data.classes", f"a binary task needs exactly 2 classes, got {len(d.classes)}"
                )
            if len(set(map(str, d.classes))) != len(d.classes):
                raise CrossError("data.classes", "a class is listed twice")
        es = self.train.early_stopping
        if es is not None and es.monitor.startswith("val_") and d.validation in (None, 0, 0.0):
            raise CrossError(
                "train.early_stopping.monitor",
                f"monitoring '{es.monitor}' needs validation data; set data.validation or "
                "monitor 'loss'",
            )
        return self

    def _cross_train(self) -> None:
        """The loss and metrics fit the task (the loss defaults to the task's own)."""
        task = self.task
        if self.train.loss is None:
            settle(self.train, "loss", TASK_LOSSES[task][0])
        loss = LOSS_ALIASES.get(self.train.loss, self.train.loss)
        if loss not in TASK_LOSSES[task]:
            raise CrossError(
                "train.loss",
                f"loss '{self.train.loss}' does not fit task '{task}'; use one of: "
                f"{', '.join(TASK_LOSSES[task])}",
            )
        settle(self.train, "loss", loss)
        if self.train.metrics is None:
            settle(self.train, "metrics", list(DEFAULT_METRICS[task]))
        for m in self.train.metrics:
            if m not in TASK_METRICS[task]:
                raise CrossError(
                    "train.metrics",
                    f"metric '{m}' does not fit task '{task}'; use any of: "
                    f"{', '.join(TASK_METRICS[task])}",
                )

    def _cross_columns(self) -> None:
        """No column is two things at once (target, feature, id), and
        every typed column is a feature."""
        d = self.data
        if d.features is not None:
            if d.target in d.features:
                raise CrossError(
                    "data.features", f"the target column '{d.target}' is also listed as a feature"
                )
            both = sorted(set(d.features) & set(d.id_columns))
            if both:
                raise CrossError(
                    "data.features",
                    f"column(s) {', '.join(both)} listed as both feature and id column",
                )
            if len(set(d.features)) != len(d.features):
                raise CrossError("data.features", "a feature column is listed twice")
        if d.target in d.id_columns:
            raise CrossError(
                "data.id_columns", f"the target column '{d.target}' is also an id column"
            )
        if d.columns:
            if d.target in d.columns:
                raise CrossError(
                    "data.columns",
                    f"the target column '{d.target}' has no feature type; remove it from "
                    "data.columns",
                )
            both = sorted(set(d.columns) & set(d.id_columns))
            if both:
                raise CrossError(
                    "data.columns",
                    f"id column(s) {', '.join(both)} have no feature type; remove them "
                    "from data.columns",
                )
            if d.features is not None:
                extra = sorted(set(d.columns) - set(d.features))
                if extra:
                    close = difflib.get_close_matches(extra[0], list(d.features), n=1, cutoff=0.6)
                    raise CrossError(
                        f"data.columns.{extra[0]}",
                        f"column(s) {', '.join(extra)} are typed but not in data.features",
                        hint=f"did you mean '{close[0]}'?"
                        if close
                        else f"the features are: {', '.join(d.features[:12])}"
                        + (" ..." if len(d.features) > 12 else ""),
                    )
            if (
                any(t != NUMBER_TYPE for t in d.columns.values()) and d.image_shape is not None
            ):  # what each type means: features/registry.py
                raise CrossError(
                    "data.image_shape",
                    "image_shape reshapes numeric columns only; it cannot be used with "
                    "text columns",
                )


class CrossError(ValueError):
    """A cross-field check that knows which key it is about."""

    def __init__(self, key: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.key = key
        self.message = message
        self.hint = hint


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def submodel(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    ann = model.model_fields[name].annotation
    for cand in (ann, *getattr(ann, "__args__", ())):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(options)}"


def check_key(parts: list[str], origin: str) -> None:
    """Refuse an override of a key the schema does not have."""
    model: type[BaseModel] | None = ExperimentConfig
    for i, part in enumerate(parts):
        if model is None:
            return  # free-form below here (e.g. model.layers)
        names = field_names(model)
        if part not in names:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(
                f"{origin}: unknown key '{'.'.join(parts)}' ('{part}' is not a key of {where})",
                hint=suggest(part, names),
            )
        model = submodel(model, part)
