"""Built-in architectures, the declarative layer builder and the model.py hook.

Every model takes the raw feature columns as a flat float32 vector. The
preprocessing the config asks for (``data.normalize``, ``data.scale``,
``data.image_shape``) is built into the model's first layers, so a saved
``model.keras`` (and every export) predicts straight from CSV columns.

Example::

    model = build_model(cfg, n_features=784, classes=list(range(10)), base_dir=Path("exp"))
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bigmodel_cli.config import ExperimentConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.features import registry
from bigmodel_cli.features.number import impute_class, impute_layer
from bigmodel_cli.features.text import raw_input_name

if TYPE_CHECKING:
    from bigmodel_cli.features.number import ColumnStats

# Layers that run arbitrary code or load foreign graphs: never from YAML.
REFUSED_LAYERS = {"Lambda", "TFSMLayer", "Input", "InputLayer", "Layer"}


def _mnist_cnn(inputs, n_out: int, task: str, cfg: Any = None, name: str = "output"):
    """The documents' MNIST CNN: 3 conv blocks, Dense(64), softmax."""
    from keras import layers as L

    x = inputs
    if len(x.shape) == 2:  # flat 784 pixels without image_shape
        side = int(math.isqrt(x.shape[-1]))
        if side * side != x.shape[-1]:
            raise ConfigError(
                f"mnist_cnn needs square images, got {x.shape[-1]} features",
                hint="set data.image_shape, e.g. [28, 28, 1]",
            )
        x = L.Reshape((side, side, 1))(x)
    x = L.Conv2D(32, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)
    return _head(x, n_out, task, name)


def _linear(inputs, n_out: int, task: str, cfg: Any = None, name: str = "output"):
    """y = θ0 + θ·x (logistic/softmax regression for classifiers)."""
    from keras import layers as L

    x = L.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    return _head(x, n_out, task, name)


def _mlp(inputs, n_out: int, task: str, cfg: Any = None, name: str = "output"):
    """Hidden ReLU layers of ``model.units`` (two of 64 by default), each followed
    by ``model.hidden_dropout`` while training."""
    from keras import layers as L

    units, rate = (
        (cfg.model.units, cfg.model.hidden_dropout) if cfg is not None else ([64, 64], 0.0)
    )
    x = L.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    for i, n in enumerate(units):
        x = L.Dense(n, activation="relu")(x)
        if rate:
            x = L.Dropout(rate)(x)
    return _head(x, n_out, task, name)


def _trees(inputs, n_out: int, task: str, cfg: Any = None, name: str = "output"):
    """``model.trees`` soft oblivious decision trees of depth ``model.tree_depth``,
    averaged (Popov et al., "Neural Oblivious Decision Ensembles", 2019): each level
    of a tree splits every row on one learned mix of the inputs against a learned
    threshold, softly (a sigmoid with a learned temperature), so the whole ensemble
    trains by gradient descent under any strategy and exports as plain tensor ops."""
    from keras import layers as L

    trees, depth, speed = (
        (cfg.model.trees, cfg.model.tree_depth, cfg.model.tree_speed)
        if cfg is not None
        else (64, 6, 1.0)
    )
    x = L.Flatten()(inputs) if len(inputs.shape) > 2 else inputs
    seed = 0
    if cfg is not None:  # each trees member its own initialisation: the j-th gets seed + 7919 j
        k = int(name.rsplit("_", 1)[1]) if name.rsplit("_", 1)[-1].isdigit() else 0
        seed = cfg.seed + 7919 * max(0, k - (cfg.model.ensemble - cfg.model.tree_members))
    logits = _register_trees()(
        trees=trees,
        depth=depth,
        outputs=n_out,
        seed=seed,
        speed=speed,
        name=f"{name}_trees",
        dtype="float32",
    )(x)
    activation = {"classification": "softmax", "binary": "sigmoid"}.get(task, "linear")
    return L.Activation(activation, name=name, dtype="float32")(logits)


@functools.lru_cache(maxsize=1)
def _register_trees():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class ObliviousTrees(keras.layers.Layer):
        """x [batch, m] -> [batch, outputs]: the mean of ``trees`` soft oblivious trees.

        Level d of tree t sends a row right with p = sigmoid((x . softmax(s_td) - b_td)
        * exp(-tau_td)); a leaf's weight is the product of its path's p or 1 - p, and
        the tree answers the weighted sum of its leaves' learned values."""

        def __init__(
            self,
            trees: int = 64,
            depth: int = 6,
            outputs: int = 1,
            seed: int = 0,
            speed: float = 1.0,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            self.trees, self.depth, self.outputs, self.seed, self.speed = (
                int(trees),
                int(depth),
                int(outputs),
                int(seed),
                float(speed),
            )

        def build(self, input_shape):
            import keras

            splits = self.trees * self.depth
            init = keras.initializers
            s = 1.0 / self.speed
            self.select = self.add_weight(
                shape=(input_shape[-1], splits),
                initializer=init.RandomUniform(-s, s, seed=self.seed),
                name="select",
            )
            self.threshold = self.add_weight(
                shape=(splits,),
                initializer=init.RandomNormal(0.0, s, seed=self.seed + 1),
                name="threshold",
            )
            self.log_temperature = self.add_weight(
                shape=(splits,), initializer="zeros", name="log_temperature"
            )
            self.leaves = self.add_weight(
                shape=(self.trees, 2**self.depth * self.outputs),
                initializer=init.RandomNormal(0.0, s, seed=self.seed + 2),
                name="leaves",
            )

        def call(self, x):
            from keras import ops

            v = (
                self.speed
            )  # parameters stored divided by it: Adam then moves them `speed` times faster
            mix = ops.matmul(ops.cast(x, "float32"), ops.softmax(self.select * v, axis=0))
            right = ops.sigmoid((mix - self.threshold * v) * ops.exp(-self.log_temperature * v))
            right = ops.reshape(right, (-1, self.trees, self.depth))
            path = ops.ones_like(right[:, :, :1])  # [batch, trees, leaves so far]
            for d in range(self.depth):
                p = right[:, :, d : d + 1]
                path = ops.concatenate([path * (1.0 - p), path * p], axis=-1)
            leaves = ops.reshape(self.leaves * v, (self.trees, 2**self.depth, self.outputs))
            return ops.mean(ops.einsum("btl,tlo->bto", path, leaves), axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.outputs)

        def get_config(self):
            return {
                **super().get_config(),
                "trees": self.trees,
                "depth": self.depth,
                "outputs": self.outputs,
                "seed": self.seed,
                "speed": self.speed,
            }

    return ObliviousTrees


def _head(x, n_out: int, task: str, name: str = "output"):
    from keras import layers as L

    activation = {"classification": "softmax", "binary": "sigmoid"}.get(task)
    return L.Dense(n_out, activation=activation, name=name)(x)


BUILTINS: dict[str, Callable[..., Any]] = {
    "mnist_cnn": _mnist_cnn,
    "linear": _linear,
    "mlp": _mlp,
    "trees": _trees,
}


def outputs_for(task: str, classes: list[Any] | None) -> int:
    return len(classes or []) if task == "classification" else 1


def preprocessing(
    inputs,
    cfg: ExperimentConfig,
    x_train: "np.ndarray | ColumnStats | None",
    plain: list | None = None,
):
    """Imputation, normalisation, scaling, reshaping and augmentation, as layers of the model.

    ``x_train`` is the training matrix of the numeric columns, or its
    :class:`~bigmodel_cli.features.number.ColumnStats` when the data is streamed. They
    compute in float32 under any precision: ``x * (1/std) - mean/std`` in
    bfloat16 would cancel away most of a large column's digits. ``plain``, when
    given, gets the numbers as they are before ``data.numeric_encoding`` (what a
    trees member reads)."""
    from keras import layers as L

    from bigmodel_cli.features.number import ColumnStats

    x = inputs
    d = cfg.data
    stats = None
    if d.missing == "impute" or d.normalize:
        if x_train is None:
            raise ConfigError(
                f"data.{'missing: impute' if d.missing == 'impute' else 'normalize'} needs the training data to compute its statistics"
            )
        stats = x_train if isinstance(x_train, ColumnStats) else ColumnStats.of(x_train)
    if d.missing == "impute":
        assert stats is not None
        x = impute_layer(x, stats)
    if d.normalize:
        assert stats is not None
        mean, std = stats.after_impute() if d.missing == "impute" else stats.plain()
        std = np.where(std > 0, std, 1.0)
        # (x - mean) / std as Rescaling, not keras Normalization: Normalization keeps
        # mean/variance as eager tensors, which the ONNX exporter turns into extra
        # graph inputs; Rescaling's constants live in the graph.
        x = L.Rescaling(
            scale=(1.0 / std).tolist(),
            offset=(-mean / std).tolist(),
            name="normalize",
            dtype="float32",
        )(x)
    before = x
    if d.numeric_encoding != "standard" and x_train is not None:
        stats = x_train if isinstance(x_train, ColumnStats) else ColumnStats.of(x_train)
        x = piecewise_layer(x, stats, d, len(stats.mean))
    encoded = x is not before
    if d.scale:
        x = L.Rescaling(1.0 / d.scale, name="scale", dtype="float32")(x)
    if d.image_shape:
        x = L.Reshape(tuple(d.image_shape), name="image")(x)
    if d.augment is not None:
        x = augmentation(x, d.augment, cfg.seed)
    if plain is not None:
        plain.append(before if encoded else x)
    return x


def augmentation(x, aug: Any, seed: int):
    """Random flips, rotations, zooms, translations and contrast (Keras
    preprocessing layers) in one :func:`_register_augment` layer, which changes
    images only when called with ``training=True`` (the training step)."""
    if len(x.shape) != 4:
        raise ConfigError(
            "data.augment works on images", hint="set data.image_shape, e.g. [28, 28, 1]"
        )
    settings = {k: v for k, v in aug.model_dump().items() if v}
    if not settings:
        return x
    return _register_augment()(settings=settings, seed=seed, name="augment")(x)


@functools.lru_cache(maxsize=1)
def _register_augment():
    """The Augment layer class, registered with Keras on first use.

    Keras's random layers run their random ops unless told ``training=False``,
    and an export traced without it would hold them (tf2onnx cannot convert
    StatelessRandomUniformV2 or ImageProjectiveTransformV3). Here anything but
    ``training=True`` passes images through, so model.keras, every export and
    the ONNX copy contain no augmentation at all."""
    import keras
    from keras import layers as L

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Augment(keras.layers.Layer):
        def __init__(self, settings: dict[str, Any], seed: int = 0, **kwargs: Any):
            super().__init__(**kwargs)
            self.settings, self.seed = dict(settings), int(seed)
            a = self.settings
            self.steps = []
            if a.get("flip"):
                self.steps.append(L.RandomFlip(a["flip"], seed=seed, name="flip"))
            if a.get("rotation"):
                self.steps.append(
                    L.RandomRotation(
                        a["rotation"], fill_mode="constant", seed=seed + 1, name="rotation"
                    )
                )
            if a.get("zoom"):
                self.steps.append(
                    L.RandomZoom(a["zoom"], fill_mode="constant", seed=seed + 2, name="zoom")
                )
            if a.get("translation"):
                self.steps.append(
                    L.RandomTranslation(
                        a["translation"],
                        a["translation"],
                        fill_mode="constant",
                        seed=seed + 3,
                        name="translation",
                    )
                )
            if a.get("contrast"):
                self.steps.append(L.RandomContrast(a["contrast"], seed=seed + 4, name="contrast"))

        def call(self, x, training=None):
            if training is not True:
                return x
            for step in self.steps:
                x = step(x, training=True)
            return x

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "settings": self.settings, "seed": self.seed}

    return Augment


def piecewise_layer(x, stats: "ColumnStats", d: Any, columns: int):
    """The first ``columns`` inputs (the numbers; missing flags follow them) over
    their training quantiles, as ``data.numeric_encoding`` says:

    - ``piecewise``: each number becomes its piecewise-linear encoding over up to
      ``data.bins`` equal-frequency bins, ``clip((x - left_t) / width_t, 0, 1)``
      (Gorishniy et al., 2022);
    - ``quantile``: each number becomes its training CDF, the same bins weighted
      by the share of rows each holds, centred and scaled to unit variance.

    Both are bounded: a value far outside the training range cannot push a ReLU
    network into extrapolating. Columns of one or two distinct values, and the
    flags, pass through. Edges are mapped through what came before (imputation
    keeps values, normalisation is affine), so the layer sees its inputs' scale."""
    from bigmodel_cli.features.number import GRID

    at = np.unique(np.round(np.linspace(0, GRID - 1, d.bins + 1)).astype(int))
    edges = stats.edges(d.bins)
    if d.normalize:
        mean, std = stats.after_impute() if d.missing == "impute" else stats.plain()
        std = np.where(std > 0, std, 1.0)
        edges = [(e - mean[j]) / std[j] for j, e in enumerate(edges)]
    left: list[list[float]] = []
    width: list[list[float]] = []
    weight: list[list[float]] = []
    for j, e in enumerate(edges):
        if len(e) < 3:  # one or two distinct values: the column itself says it all
            left.append([]), width.append([]), weight.append([])
            continue
        q = stats.quantiles[at, j] if stats.quantiles is not None else None
        q = (q - mean[j]) / std[j] if (d.normalize and q is not None) else q
        # the share of rows in each distinct bin: grid steps between its edges
        share = np.array(
            [
                np.mean((q >= lo) & (q < hi)) if q is not None else 1.0
                for lo, hi in zip(e[:-1], e[1:])
            ]
        )
        left.append(e[:-1].tolist())
        width.append(np.maximum(np.diff(e), 1e-12).tolist())
        weight.append((share / max(share.sum(), 1e-12)).tolist())
    if not any(left):
        return x
    return _register_piecewise()(
        left=left,
        width=width,
        weight=weight,
        mode=d.numeric_encoding,
        name=d.numeric_encoding,
        dtype="float32",
    )(x)


@functools.lru_cache(maxsize=1)
def _register_piecewise():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class PiecewiseLinear(keras.layers.Layer):
        """x [batch, m] -> the passed-through columns, then per encoded column j either
        every bin's clip((x_j - left_jt) / width_jt, 0, 1) (piecewise) or their
        weighted sum, the CDF, scaled (quantile)."""

        def __init__(
            self,
            left: list[list[float]],
            width: list[list[float]],
            weight: list[list[float]] | None = None,
            mode: str = "piecewise",
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            self.left, self.width = (
                [list(map(float, r)) for r in left],
                [list(map(float, r)) for r in width],
            )
            self.weight = [
                list(map(float, r))
                for r in (weight or [[1.0 / max(len(r), 1)] * len(r) for r in left])
            ]
            self.mode = mode
            self._cols = [j for j, r in enumerate(self.left) if r]
            self._lefts = np.concatenate([self.left[j] for j in self._cols]).astype(np.float32)
            self._widths = np.concatenate([self.width[j] for j in self._cols]).astype(np.float32)
            self._index = np.concatenate([[j] * len(self.left[j]) for j in self._cols]).astype(
                np.int32
            )
            # quantile: bins -> their column's CDF, a [bins, encoded columns] weighted sum
            mix = np.zeros((len(self._index), len(self._cols)), np.float32)
            at = 0
            for k, j in enumerate(self._cols):
                mix[at : at + len(self.left[j]), k] = self.weight[j]
                at += len(self.left[j])
            self._mix = mix

        def call(self, x):
            from keras import ops

            per_bin = ops.take(x, self._index, axis=1)  # each bin's own column
            enc = ops.clip((per_bin - self._lefts) / self._widths, 0.0, 1.0)
            if self.mode == "quantile":
                enc = (
                    ops.matmul(enc, self._mix) - 0.5
                ) * 3.4641016  # uniform on [0, 1] -> mean 0, variance 1
            passed = [j for j in range(x.shape[-1]) if j not in set(self._cols)]
            return (
                ops.concatenate([ops.take(x, np.asarray(passed, np.int32), axis=1), enc], axis=1)
                if passed
                else enc
            )

        def compute_output_shape(self, input_shape):
            kept = input_shape[1] - len(self._cols)
            return (
                input_shape[0],
                kept + (len(self._cols) if self.mode == "quantile" else len(self._index)),
            )

        def get_config(self):
            return {
                **super().get_config(),
                "left": self.left,
                "width": self.width,
                "weight": self.weight,
                "mode": self.mode,
            }

    return PiecewiseLinear


def declarative(x, specs: list[Any]):
    """Apply ``model.layers``: each item ``Name`` or ``{Name: {kwargs}}``."""
    import keras

    for i, spec in enumerate(specs):
        key = f"model.layers[{i}]"
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1:
            name, kwargs = next(iter(spec.items()))
            kwargs = kwargs or {}
            if not isinstance(kwargs, dict):
                raise ConfigError(
                    f"{key}: the arguments of {name} must be a mapping, got {kwargs!r}",
                    hint=f"e.g. - {name}: {{units: 10}}",
                )
        else:
            raise ConfigError(
                f"{key}: expected a layer name or {{LayerName: {{arguments}}}}, got {spec!r}",
                hint="e.g. - Dense: {units: 20, activation: relu}",
            )
        if name in REFUSED_LAYERS:
            raise ConfigError(
                f"{key}: {name} is not allowed in model.layers (it runs arbitrary code)",
                hint="define such a model in model.py:build",
            )
        cls = getattr(keras.layers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
            import difflib

            names = [n for n in dir(keras.layers) if n[:1].isupper()]
            close = difflib.get_close_matches(str(name), names, n=1)
            raise ConfigError(
                f"{key}: '{name}' is not a keras.layers class",
                hint=f"did you mean '{close[0]}'?" if close else "see https://keras.io/api/layers/",
            )
        try:
            x = cls(**kwargs)(x)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{key}: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {str(e).splitlines()[0]}"
            ) from None
    return x


def register_layers() -> None:
    """Make bigmodel's own layers known to Keras before a model file is loaded."""
    from bigmodel_cli.features import category as categories
    from bigmodel_cli.features import date as dates
    from bigmodel_cli.features import text

    text.layers()
    categories.layers()
    dates.layers()
    impute_class()
    _register_augment()
    _register_piecewise()
    _register_expm1()
    _register_ensemble()
    _register_trees()
    _register_temperature()


def load_hook(spec: str, base_dir: Path) -> Callable[..., Any]:
    """``model.py:build`` -> the function, imported from the experiment folder."""
    file, _, func = spec.partition(":")
    path = (base_dir / file).resolve()
    if not path.is_file():
        raise ConfigError(
            f"model.architecture: {path} does not exist",
            hint="use a built-in (" + ", ".join(BUILTINS) + ") or model.py:build",
        )
    mod_name = f"bigmodel_user_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    assert spec_ and spec_.loader
    module = importlib.util.module_from_spec(spec_)
    sys.modules[mod_name] = module
    try:
        spec_.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(
            f"model.architecture: importing {path} failed: {type(e).__name__}: {e}"
        ) from None
    fn = getattr(module, func or "build", None)
    if not callable(fn):
        raise ConfigError(f"model.architecture: {path} has no function '{func or 'build'}'")
    return fn


def target_space(
    y: "np.ndarray | ColumnStats", cfg: ExperimentConfig
) -> "np.ndarray | ColumnStats":
    """The targets the loss sees: log(1 + y) under ``data.target_transform: log``."""
    if cfg.data.target_transform != "log":
        return y
    from bigmodel_cli.features.number import ColumnStats

    if isinstance(y, ColumnStats):
        raise ConfigError(
            "data.target_transform: log needs the training targets in memory",
            hint="set data.stream: false, or data.target_transform: none",
        )
    y = np.asarray(y, np.float64)
    if np.nanmin(y) < 0:
        raise ConfigError(
            f"data.target_transform: log needs a non-negative target; the training rows reach {np.nanmin(y):g}",
            hint="set data.target_transform: none",
        )
    return np.log1p(y)


@functools.lru_cache(maxsize=1)
def _register_expm1():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Expm1(keras.layers.Layer):
        """max(exp(x) - 1, 0): a model trained on log(1 + y) of a target >= 0 answers in y's units."""

        def call(self, x):
            from keras import ops

            return ops.maximum(
                ops.exp(ops.minimum(x, 80.0)) - 1.0, 0.0
            )  # the target was >= 0; exp(88) overflows float32; tf2onnx has no Expm1

        def compute_output_shape(self, input_shape):
            return input_shape

    return Expm1


def target_stats(y: "np.ndarray | ColumnStats") -> tuple[float, float]:
    """(mean, std) of a regression target (or of its streamed statistics); std 1 for a constant target."""
    from bigmodel_cli.features.number import ColumnStats

    if isinstance(y, ColumnStats):
        mean, std = float(y.mean[0]), float(y.std[0])
    else:
        mean, std = float(np.mean(y)), float(np.std(y))
    return mean, (std if std > 0 else 1.0)


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
    else:  # trained side by side, each on its own loss (training/trainer.py); the model answers their mean
        Stack, Mean = _register_ensemble()
        outputs = Mean(
            weighted=cfg.model.ensemble_weights == "validation", name="ensemble", dtype="float32"
        )(Stack(name=MEMBERS, dtype="float32")(members))
    model = keras.Model(inputs, outputs, name=cfg.name.replace("-", "_").replace(".", "_"))
    check_output(model, cfg.task, n_out)
    return model


MEMBERS = "ensemble_members"


def member_architectures(cfg: ExperimentConfig) -> list[str | None]:
    """Each ensemble member's architecture: ``model.architecture`` (or ``model.layers``),
    the last ``model.tree_members`` of them ``trees``."""
    m = cfg.model
    return [m.architecture] * (m.ensemble - m.tree_members) + ["trees"] * m.tree_members


def _head_of(
    cfg: ExperimentConfig, x: Any, n_out: int, base_dir: Path, name: str, arch: str | None
):
    """One member's layers from the preprocessed inputs ``x`` to its output."""
    import keras

    if cfg.model.layers is not None and arch != "trees":
        return declarative(x, cfg.model.layers)
    if arch in BUILTINS:
        return BUILTINS[arch](x, n_out, cfg.task, cfg=cfg, name=name)
    if arch and ":" in arch:
        fn = load_hook(arch, base_dir)
        inner = fn(input_shape=tuple(x.shape[1:]), num_outputs=n_out, config=cfg)
        if not isinstance(inner, keras.Model):
            raise ConfigError(
                f"model.architecture: {arch} returned {type(inner).__name__}, not a keras.Model"
            )
        return inner(x)
    raise ConfigError(
        f"model.architecture: unknown architecture '{arch}'",
        hint="built-ins: " + ", ".join(BUILTINS) + "; or model.py:build; or list model.layers",
    )


def set_member_weights(model, weights: "np.ndarray") -> bool:
    """Give a ``model.ensemble_weights: validation`` ensemble its members' weights; False if it has none."""
    try:
        layer = model.get_layer("ensemble")
    except ValueError:
        return False
    if not getattr(layer, "weighted", False):
        return False
    layer.member_weights.assign(np.asarray(weights, np.float32))
    return True


def select_members(loss: Callable[[np.ndarray], float], k: int, rounds: int = 25) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al., 2004): ``rounds``
    times, add the member whose addition gives the lowest ``loss(weights)``; the
    weights are how often each was picked. Ties go to the lower index, so every
    process picks the same."""
    counts = np.zeros(k, np.float64)
    for _ in range(rounds):
        scores = []
        for j in range(k):
            trial = counts.copy()
            trial[j] += 1
            scores.append(loss(trial / trial.sum()))
        counts[int(np.argmin(scores))] += 1
    return (counts / counts.sum()).astype(np.float32)


def members_model(model):
    """The model's ensemble members, stacked [batch, members, outputs], sharing its
    weights (None without ``model.ensemble``): what the training step's losses see."""
    import keras

    try:
        layer = model.get_layer(MEMBERS)
    except ValueError:
        return None
    return keras.Model(model.inputs, layer.output)


@functools.lru_cache(maxsize=1)
def _register_ensemble():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Stack(keras.layers.Layer):
        """K outputs [batch, n] -> [batch, K, n]."""

        def call(self, xs):
            from keras import ops

            return ops.stack([ops.cast(x, "float32") for x in xs], axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0][0], len(input_shape), *input_shape[0][1:])

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Mean(keras.layers.Layer):
        """[batch, K, n] -> [batch, n]: the members' average; ``weighted``: by the
        weights in ``member_weights`` (equal until :func:`set_member_weights`)."""

        def __init__(self, weighted: bool = False, **kwargs: Any):
            super().__init__(**kwargs)
            self.weighted = bool(weighted)

        def build(self, input_shape):
            if self.weighted:
                k = input_shape[1]
                self.member_weights = self.add_weight(
                    shape=(k,),
                    initializer=keras.initializers.Constant(1.0 / k),
                    trainable=False,
                    name="member_weights",
                )

        def call(self, x):
            from keras import ops

            if self.weighted:
                return ops.einsum(
                    "bkn,k->bn", ops.cast(x, "float32"), ops.cast(self.member_weights, "float32")
                )
            return ops.mean(x, axis=1)

        def get_config(self):
            return {**super().get_config(), "weighted": self.weighted}

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *input_shape[2:])

    return Stack, Mean


def text_inputs(
    cfg: ExperimentConfig,
    n_numeric: int,
    x_numeric: np.ndarray | None,
    tokenizers: dict[str, Any],
    cfg_dir: Path | None = None,
):
    """Inputs of a core model with text: ``features`` (numbers, if any) and one
    int32 id input per text column, each an n-gram bag: TF-IDF weighted
    (``data.text.weighting: tfidf``, text.TfidfBag) or the mean of learned vectors
    (``mean``, fastText-style); returns (inputs dict, one flat vector)."""
    import keras
    from keras import layers as L

    from bigmodel_cli.features import text

    inputs: dict[str, Any] = {}
    parts = []
    plain: list = []  # the numbers before data.numeric_encoding (a trees member's)
    if n_numeric:
        inputs["features"] = keras.Input(shape=(n_numeric,), name="features", dtype="float32")
        parts.append(preprocessing(inputs["features"], cfg, x_numeric, plain))
    context = {"base_dir": Path.cwd() if cfg_dir is None else cfg_dir}  # one backbone for all
    for col, tok in tokenizers.items():
        name = text.ids_name(col)
        inputs[name], part = registry.kind_of_encoder(tok).core_input(tok, name, cfg, context)
        parts.append(part)
    x = parts[0] if len(parts) == 1 else L.Concatenate(name="inputs")(parts)
    x_plain = x
    if (
        plain and plain[0] is not parts[0]
    ):  # numbers encoded for the MLP: the trees' own concatenation
        x_plain = (
            plain[0]
            if len(parts) == 1
            else L.Concatenate(name="inputs_plain")([plain[0], *parts[1:]])
        )
    if cfg.model.dropout:
        same = x_plain is x
        x = L.Dropout(cfg.model.dropout, name="text_dropout")(x)
        x_plain = x if same else L.Dropout(cfg.model.dropout, name="text_dropout_plain")(x_plain)
    return inputs, x, x_plain


def with_raw_text(core, tokenizers: dict[str, Any], name: str | None = None):
    """The model users get: each encoded column as raw strings, encoded inside by its
    type's layer (:meth:`ColumnType.raw_layer`), then the trained core."""
    import keras

    from bigmodel_cli.features import text

    inputs: dict[str, Any] = {}
    feed: dict[str, Any] = {}
    core_inputs = core.input if isinstance(core.input, dict) else {"features": core.input}
    if "features" in core_inputs:
        inputs["features"] = feed["features"] = keras.Input(
            shape=tuple(core_inputs["features"].shape[1:]), name="features", dtype="float32"
        )
    for col, tok in tokenizers.items():
        raw_name = raw_input_name(col)
        raw = inputs[raw_name] = keras.Input(shape=(), name=raw_name, dtype="string")
        layer = registry.kind_of_encoder(tok).raw_layer(tok, raw_name)
        feed[text.ids_name(col)] = layer(raw)
    return keras.Model(inputs, core(feed), name=name or core.name)


def core_of(model):
    """The integer-id core inside a raw-text model (the model itself otherwise)."""
    if any(getattr(layer, "reads_raw_column", False) for layer in model.layers):
        inner = [
            layer for layer in model.layers if hasattr(layer, "layers") and hasattr(layer, "inputs")
        ]
        if inner:
            return inner[-1]
    return model


def check_output(model, task: str, n_out: int) -> None:
    """The model's output must match the task: shape and final activation."""
    shape = tuple(model.output.shape[1:])
    if shape != (n_out,):
        what = f"{n_out} classes" if task == "classification" else "1 value"
        raise ConfigError(
            f"the model outputs shape {shape} but task '{task}' needs ({n_out},) ({what})",
            hint=f"end the model with Dense({n_out}{', activation=softmax' if task == 'classification' else ', activation=sigmoid' if task == 'binary' else ''})",
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


def _saved_keras_version(path: Path) -> str | None:
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except Exception:
        return None


def _version_tuple(v: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def load_trained(path: Path, unsafe: bool = False, user_code_dir: Path | None = None):
    """Load a ``.keras`` file with Keras's safe mode; every failure is one clear line.

    ``user_code_dir``: a run folder holding a copied ``model.py`` whose custom
    layers must be importable before loading."""
    import zipfile

    import keras

    from bigmodel_cli.errors import ModelFileError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a valid .keras file (corrupt or truncated)",
            hint="re-export it, or use the run's checkpoints/best.keras",
        )
    saved = _saved_keras_version(path)
    if saved is None:
        raise ModelFileError(
            f"{path} is not a valid .keras file (no metadata.json; corrupt or truncated)",
            hint="re-export it, or use the run's checkpoints/best.keras",
        )
    newer = _version_tuple(saved)[:2] > _version_tuple(keras.__version__)[:2]
    if _version_tuple(saved)[:1] > _version_tuple(keras.__version__)[:1]:
        raise ModelFileError(
            f"{path} was saved by Keras {saved}, a newer format than the installed Keras {keras.__version__}",
            hint=f"upgrade: pip install 'keras>={saved}'",
        )
    if user_code_dir is not None and (user_code_dir / "model.py").is_file():
        with contextlib.suppress(ConfigError):
            load_hook("model.py:build", user_code_dir)
    from bigmodel_cli.features.backbone import import_if_needed

    register_layers()
    import_if_needed(path)  # and keras-hub's, for a model.backbone run
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as e:
        text = str(e)
        if "Lambda" in text or "safe_mode" in text or "arbitrary code" in text:
            raise ModelFileError(
                f"{path} contains a Lambda layer (Python code); refused by Keras safe mode",
                hint="pass --unsafe only if you trust where this file came from",
            ) from None
        raise ModelFileError(
            _load_failure(path, text, saved, newer),
            hint=f"upgrade: pip install 'keras>={saved}'" if newer else None,
        ) from None
    except Exception as e:  # any other failure of a file we did not write is bad input
        raise ModelFileError(
            _load_failure(path, f"{type(e).__name__}: {e}", saved, newer),
            hint=f"upgrade: pip install 'keras>={saved}'"
            if newer
            else "the file may be corrupt; use the run's checkpoints/best.keras",
        ) from None


def _load_failure(path: Path, text: str, saved: str | None, newer: bool) -> str:
    first = text.strip().splitlines()[0][:200] if text.strip() else "unknown error"
    if newer:
        return f"{path} was saved by Keras {saved}, newer than the installed one, and does not load: {first}"
    return f"cannot load {path}: {first}"


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
