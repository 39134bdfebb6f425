"""Building the model to train: inputs, preprocessing, one head per ensemble member,
the target's units, under the run's dtype policy; and what is done to a built
model after (float32 outputs, the optimizer, the temperature layer).

The parts live by job: ``inputs`` (the core's inputs, the raw-string model around
it), ``numeric`` (number and target preprocessing layers), ``architectures`` (the
built-ins, ``model.layers``, ``model.py:build``), ``ensemble`` (members, weights),
``loading`` (a saved model read back).

Every model takes the raw feature columns: the preprocessing the config asks for
(``data.normalize``, ``data.scale``, ``data.image_shape``) is built into its first
layers, so a saved ``model.keras`` (and every export) predicts straight from CSV
columns.

Example::

    model = build_model(cfg, n_features=784, classes=list(range(10)), base_dir=Path("exp"))
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.model.architectures import outputs_for
from bigmodel_cli.model.ensemble import (
    MEMBERS,
    _head_of,
    _register_ensemble,
    member_architectures,
)
from bigmodel_cli.model.inputs import text_inputs
from bigmodel_cli.model.numeric import _register_expm1, preprocessing, target_space, target_stats


def build_model(
    cfg: ExperimentConfig,
    n_features: int,
    classes: list[Any] | None,
    base_dir: Path,
    x_train: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    tokenizers: dict[str, Any] | None = None,
    precision: str = "float32",
):
    """:func:`_build_model` under the Keras dtype policy ``precision``; the
    output layer computes in float32 (mixed precision's rule for a stable loss)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = _build_model(cfg, n_features, classes, base_dir, x_train, y_train, tokenizers)
    finally:
        keras.config.set_dtype_policy(before)
    if precision != "float32":
        float32_output(model)
    return model


def macs_per_sample(model) -> int:
    """Multiply-adds one sample costs in the model's Dense and convolution layers
    (the work bfloat16 speeds up); other layers count 0."""
    import math

    total = 0
    for layer in _all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or getattr(layer, "built", False) is False:
            continue
        size = math.prod(int(d) for d in kernel.shape)
        try:
            out = [int(d) for d in layer.output.shape[1:-1] if d]
        except (AttributeError, ValueError, TypeError):
            out = []
        name = type(layer).__name__
        if (
            name.startswith("Conv")
            or name.startswith("DepthwiseConv")
            or name.startswith("SeparableConv")
        ):
            total += size * math.prod(out)  # the kernel applied at every output position
        elif name in ("Dense", "EinsumDense"):
            total += size * math.prod(out)  # times the positions of a sequence input, if any
    return total


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if getattr(layer, "layers", None):
            yield from _all_layers(layer)


def float32_output(model) -> None:
    """The layers that make the model's output compute in float32."""
    layer = _last_layer(model)
    layer.dtype_policy = "float32"
    if layer.name == "ensemble":  # every member's head too
        for member in model.layers:
            if member.name.startswith("output") or member.name in (
                "target_units",
                "target_expm1",
                MEMBERS,
            ):
                member.dtype_policy = "float32"
        return
    if layer.name == "target_expm1" and len(model.layers) > 2:
        model.layers[-2].dtype_policy = "float32"
        layer = model.layers[-2]
    if layer.name == "target_units" and len(model.layers) > 1:  # Rescaling after the real head
        head = model.layers[-2]
        (
            _last_layer(head) if hasattr(head, "layers") and head.layers else head
        ).dtype_policy = "float32"


def float32_copy(model):
    """The same model and weights with every mixed-precision policy made float32:
    what model.keras, the exports and the ONNX copy hold."""

    def plain(o: Any) -> Any:
        if isinstance(o, dict):
            if o.get("class_name") == "DTypePolicy" and str(
                (o.get("config") or {}).get("name", "")
            ).startswith("mixed_"):
                return {**o, "config": {**o["config"], "name": "float32"}}
            return {k: plain(v) for k, v in o.items()}
        if isinstance(o, list):
            return [plain(v) for v in o]
        return o

    config = model.get_config()
    if "mixed_" not in repr(config):
        return model
    copy = model.__class__.from_config(plain(config))
    copy.set_weights(model.get_weights())
    return copy


def _build_model(
    cfg: ExperimentConfig,
    n_features: int,
    classes: list[Any] | None,
    base_dir: Path,
    x_train: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    tokenizers: dict[str, Any] | None = None,
):
    """The model to train. With text columns (``tokenizers``) it is the *core*:
    it takes each text column as int32 ids (:func:`text_inputs`) and
    :func:`with_raw_text` later wraps it to take the strings themselves.

    ``n_features`` and ``x_train`` are the numeric feature columns only."""
    import keras

    n_out = outputs_for(cfg.task, classes)
    inputs: Any
    if not tokenizers:
        inputs = keras.Input(shape=(n_features,), name="features", dtype="float32")
        plain: list = []
        x = preprocessing(inputs, cfg, x_train, plain)
        x_plain = plain[0]
    else:
        inputs, x, x_plain = text_inputs(cfg, n_features, x_train, tokenizers, base_dir)
    post = []  # layers from a head's output to the target's units, shared by every member
    if cfg.data.normalize_target:
        if y_train is None:
            raise ConfigError("data.normalize_target needs the training targets")
        mean, std = target_stats(target_space(y_train, cfg))
        post.append(keras.layers.Rescaling(scale=std, offset=mean, name="target_units"))
    if cfg.data.target_transform == "log":
        post.append(_register_expm1()(name="target_expm1", dtype="float32"))
    members = []
    for k, arch in enumerate(member_architectures(cfg)):
        out = _head_of(
            cfg,
            x_plain if arch == "trees" else x,
            n_out,
            base_dir,
            "output" if k == 0 else f"output_{k}",
            arch,
        )
        for layer in post:
            out = layer(out)
        members.append(out)
    if len(members) == 1:
        outputs = members[0]
    # trained side by side, each on its own loss (training/trainer.py); the model answers their mean
    else:
        Stack, Mean = _register_ensemble()
        outputs = Mean(
            weighted=cfg.model.ensemble_weights == "validation", name="ensemble", dtype="float32"
        )(Stack(name=MEMBERS, dtype="float32")(members))
    model = keras.Model(inputs, outputs, name=cfg.name.replace("-", "_").replace(".", "_"))
    check_output(model, cfg.task, n_out)
    return model


def check_output(model, task: str, n_out: int) -> None:
    """The model's output must match the task: shape and final activation."""
    ending = {"classification": ", activation=softmax", "binary": ", activation=sigmoid"}
    shape = tuple(model.output.shape[1:])
    if shape != (n_out,):
        what = f"{n_out} classes" if task == "classification" else "1 value"
        raise ConfigError(
            f"the model outputs shape {shape} but task '{task}' needs ({n_out},) ({what})",
            hint=f"end the model with Dense({n_out}{ending.get(task, '')})",
        )
    want = {"classification": "softmax", "binary": "sigmoid"}.get(task)
    if want:
        last = _last_layer(model)
        act = getattr(getattr(last, "activation", None), "__name__", None)
        if act is not None and act != want:
            raise ConfigError(
                f"task '{task}' needs probabilities, but the last layer's activation is '{act}'",
                hint=f"end the model with activation: {want}",
            )


def _last_layer(model):
    layer = model.layers[-1]
    while hasattr(layer, "layers") and layer.layers:
        layer = layer.layers[-1]
    return layer


def make_optimizer(
    cfg: ExperimentConfig,
    replicas: int = 1,
    precision: str = "float32",
    total_steps: int | None = None,
):
    """The optimizer; under mixed_float16 wrapped in a LossScaleOptimizer (the
    training step scales the loss with it, so small float16 gradients survive).
    ``train.lr_schedule: cosine`` decays the rate to 0 over ``total_steps``; the
    schedule is saved in the checkpoints, so a resumed run keeps it."""
    import keras

    lr: Any = cfg.train.learning_rate * (replicas if cfg.train.scale_lr == "linear" else 1)
    if cfg.train.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(int(total_steps or 1), 1))
    cls = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adamw": keras.optimizers.AdamW,
        "adagrad": keras.optimizers.Adagrad,
        "nadam": keras.optimizers.Nadam,
        "adamax": keras.optimizers.Adamax,
    }[cfg.train.optimizer]
    opt = (
        cls(learning_rate=lr)
        if cfg.train.weight_decay is None
        else cls(learning_rate=lr, weight_decay=cfg.train.weight_decay)
    )
    return keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt


def default_batch_size(model) -> int:
    """Rows per inference call: ~256 MB of activations, 256..65536 rows."""
    per_row = 0
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        per_row += math.prod(d for d in shape[1:] if d)
    per_row = max(per_row, 1)
    if isinstance(model.input, dict) or len(model.inputs) > 1:
        # Text: id rows and their vectors run up to max_tokens * ngrams long, which
        # the shapes above (None) do not show; 256 rows keep that near 130 MB at 2,000 tokens.
        return int(min(256, max(64, (64 << 20) // per_row)))
    return int(min(65536, max(256, (64 << 20) // per_row)))


def with_temperature_layer(
    core,
    task: str,
    temperature: float,
    prior: list[float] | None = None,
    threshold: float | None = None,
):
    """``core`` with its probabilities recalibrated (a layer of the model: model.keras,
    SavedModel, ONNX and serve all answer the calibrated ones). ``prior``: the log
    class weights the training loss used, taken back out (a weighted loss learns
    probabilities multiplied by the weights); ``threshold``: a binary model's decision
    threshold, kept in the layer's config for predict and serve."""
    import keras

    layer = _register_temperature()(
        task=task,
        temperature=temperature,
        prior=prior,
        threshold=threshold,
        name="calibration",
        dtype="float32",
    )
    return keras.Model(
        core.input, layer(core.output), name=core.name
    )  # .input: the dict of named inputs, as with_raw_text needs


def decision_threshold(model) -> float:
    """A binary model's decision threshold (0.5 unless its calibration layer holds one)."""
    for layer in _all_layers(model):
        t = getattr(layer, "threshold", None) if layer.name == "calibration" else None
        if t is not None:
            return float(t)
    return 0.5


@functools.lru_cache(maxsize=1)
def _register_temperature():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Temperature(keras.layers.Layer):
        """Probabilities -> softmax((log p - prior) / T) (classification) or
        sigmoid((logit p - prior) / T) (binary): temperature scaling, fitted on the
        validation split after training, after the class weights' prior is undone."""

        def __init__(
            self,
            task: str = "classification",
            temperature: float = 1.0,
            prior: list[float] | None = None,
            threshold: float | None = None,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            self.task, self.temperature = task, float(temperature)
            self.prior = [float(v) for v in prior] if prior is not None else None
            self.threshold = float(threshold) if threshold is not None else None

        def call(self, p):
            from keras import ops

            p = ops.clip(ops.cast(p, "float32"), 1e-7, 1.0 - 1e-7 if self.task == "binary" else 1.0)
            if self.task == "binary":
                z = ops.log(p) - ops.log(1.0 - p)
                if self.prior is not None:
                    z = z - (self.prior[1] - self.prior[0])
                return ops.sigmoid(z / self.temperature)
            z = ops.log(p)
            if self.prior is not None:
                z = z - ops.convert_to_tensor(np.asarray(self.prior, np.float32))
            return ops.softmax(z / self.temperature, axis=-1)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {
                **super().get_config(),
                "task": self.task,
                "temperature": self.temperature,
                "prior": self.prior,
                "threshold": self.threshold,
            }

    return Temperature
