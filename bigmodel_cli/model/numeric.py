"""The in-model preprocessing of number columns and of a regression target:
``data.normalize``/``scale``/``image_shape``, imputation, piecewise-linear
encodings (``data.numeric_encoding``), image augmentation, and the target's
log/standardised space. Each is a Keras layer, so ``model.keras`` and every
export take the raw numbers.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.features.image import IMAGE, augmentation
from bigmodel_cli.features.number import impute_layer

if TYPE_CHECKING:
    from bigmodel_cli.features.number import ColumnStats


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
                f"data.{'missing: impute' if d.missing == 'impute' else 'normalize'} needs "
                "the training data to compute its statistics"
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
        x = IMAGE.core_layers(x, d.image_shape, d.augment, cfg.seed)
    elif d.augment is not None:
        x = augmentation(x, d.augment, cfg.seed)  # no image_shape: the one-line error
    if plain is not None:
        plain.append(before if encoded else x)
    return x


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
            "data.target_transform: log needs a non-negative target; the training rows "
            f"reach {np.nanmin(y):g}",
            hint="set data.target_transform: none",
        )
    return np.log1p(y)


@functools.lru_cache(maxsize=1)
def _register_expm1():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Expm1(keras.layers.Layer):
        """max(exp(x) - 1, 0): a model trained on log(1 + y) of a
        target >= 0 answers in y's units."""

        def call(self, x):
            from keras import ops

            return ops.maximum(
                ops.exp(ops.minimum(x, 80.0)) - 1.0, 0.0
            )  # the target was >= 0; exp(88) overflows float32; tf2onnx has no Expm1

        def compute_output_shape(self, input_shape):
            return input_shape

    return Expm1


def target_stats(y: "np.ndarray | ColumnStats") -> tuple[float, float]:
    """(mean, std) of a regression target (or of its streamed
    statistics); std 1 for a constant target."""
    from bigmodel_cli.features.number import ColumnStats

    if isinstance(y, ColumnStats):
        mean, std = float(y.mean[0]), float(y.std[0])
    else:
        mean, std = float(np.mean(y)), float(np.std(y))
    return mean, (std if std > 0 else 1.0)
