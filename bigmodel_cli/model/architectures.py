"""Built-in architectures (``model.architecture``: mnist_cnn, linear, mlp, soft trees)
and their output head, the declarative ``model.layers`` builder and the
``model.py:build`` hook: each maps the preprocessed inputs to one member's output.

Example::

    out = BUILTINS["mlp"](x, n_out=3, task="classification", cfg=cfg)
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Callable

from bigmodel_cli.errors import ConfigError


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


def leaf_paths(depth: int):
    """[2 * depth, 2**depth]: row d is 1 where leaf l goes right at level d (bit d of l),
    row depth + d where it goes left; a leaf's weight is exp(logs @ its column)."""
    import numpy as np

    bits = (np.arange(2**depth)[None, :] >> np.arange(depth)[:, None]) & 1
    return np.concatenate([bits, 1 - bits]).astype("float32")


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
            # each split's mix of the inputs: a softmax over each column of select, taken
            # along the last axis of its transpose (contiguous in memory; axis 0 was slower)
            mix = ops.matmul(
                ops.cast(x, "float32"),
                ops.transpose(ops.softmax(ops.transpose(self.select) * v, axis=-1)),
            )
            z = (mix - self.threshold * v) * ops.exp(-self.log_temperature * v)
            z = ops.reshape(z, (-1, self.depth))  # [batch * trees, depth]
            # A leaf's weight is the product over the levels of p or 1 - p: in log space, one
            # matmul of [log p, log(1 - p)] with each leaf's path bits, then one exp. The same
            # numbers (to float32 rounding) as doubling the path level by level with a
            # concatenation per level, in fewer and larger ops (benchmarks/member_cost.py)
            logs = ops.concatenate([ops.log_sigmoid(z), ops.log_sigmoid(-z)], axis=-1)
            path = ops.exp(ops.matmul(logs, ops.convert_to_tensor(leaf_paths(self.depth))))
            path = ops.reshape(path, (-1, self.trees, 2**self.depth, 1))
            leaves = ops.reshape(self.leaves * v, (1, self.trees, 2**self.depth, self.outputs))
            return ops.mean(ops.sum(path * leaves, axis=2), axis=1)

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
                f"{key}: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                f"failed: {str(e).splitlines()[0]}"
            ) from None
    return x


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
