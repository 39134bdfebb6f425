"""The model:, train: and tune: sections of experiment.yaml, and checkpoint_every's reading."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bigmodel_cli.config.base import OPTIMIZERS, Strict
from bigmodel_cli.errors import ConfigError


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
    """train.checkpoint_every -> (seconds, steps), one of them set:
    '10m' -> (600, None), 500 -> (None, 500)."""
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
