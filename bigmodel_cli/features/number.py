"""Column statistics the model's preprocessing layers are built from.

Normalisation needs each numeric column's mean and standard deviation,
``data.missing: impute`` its median and which columns had gaps. In memory
they come from the training matrix (:meth:`ColumnStats.of`); when the data is
streamed they are merged chunk by chunk in the same pass that writes the
blocks (:meth:`ColumnStats.merge`, Chan et al.'s parallel variance), with the
median taken from a fixed-size uniform sample of the training rows (exact
when the data has fewer rows than the sample).

Example::

    s = ColumnStats.of(x)                          # exact, from a matrix
    s = ColumnStats.of(chunk1).merge(ColumnStats.of(chunk2))
    mean, std = s.after_impute()[:2]
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bigmodel_cli.features.base import ColumnType

# quantiles kept per column (0%, 0.78%, ..., 100%): piecewise-linear bins are picked from them
GRID = 129
SAMPLE_FOR_QUANTILES = 200_000


@dataclass
class ColumnStats:
    rows: int  # rows seen, missing values included
    count: np.ndarray  # finite values per column
    mean: np.ndarray  # mean of the finite values
    m2: np.ndarray  # sum of squared deviations of the finite values
    median: np.ndarray  # of the finite values (NaN when a column has none)
    # [GRID, columns] of the finite values (NaN when a column has none)
    quantiles: np.ndarray | None = None

    @classmethod
    def of(cls, x: np.ndarray) -> "ColumnStats":
        x = _as_matrix(x)
        finite = np.isfinite(x)
        count = finite.sum(axis=0)
        import warnings

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value: NaN median
            xf = np.where(finite, x, np.nan)
            mean = np.where(count > 0, np.nansum(xf, axis=0) / np.maximum(count, 1), 0.0)
            m2 = np.nansum((xf - mean) ** 2, axis=0)
            median = np.nanmedian(xf, axis=0) if len(x) else np.full(x.shape[1], np.nan)
            quantiles = grid_quantiles(xf)
        return cls(len(x), count.astype(np.int64), mean, m2, median, quantiles)

    @classmethod
    def empty(cls, columns: int) -> "ColumnStats":
        z = np.zeros(columns)
        return cls(0, np.zeros(columns, np.int64), z, z.copy(), np.full(columns, np.nan))

    def merge(self, other: "ColumnStats") -> "ColumnStats":
        """Both parts' statistics as one (the median is left to the caller: it needs the values)."""
        n = self.count + other.count
        with np.errstate(all="ignore"):
            delta = other.mean - self.mean
            mean = np.where(n > 0, self.mean + delta * other.count / np.maximum(n, 1), 0.0)
            m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / np.maximum(n, 1)
        return ColumnStats(self.rows + other.rows, n, mean, m2, self.median)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.count, 1))

    @property
    def flagged(self) -> list[int]:
        """Columns with a missing value somewhere: they get a missing flag when imputed."""
        return [int(j) for j in np.flatnonzero(self.count < self.rows)]

    def edges(self, bins: int) -> list[np.ndarray]:
        """Per column, the distinct edges of up to ``bins`` equal-frequency bins
        (empty for a column with no values)."""
        if self.quantiles is None:
            raise ValueError("these statistics hold no quantiles")
        at = np.unique(np.round(np.linspace(0, GRID - 1, bins + 1)).astype(int))
        out = []
        for j in range(self.quantiles.shape[1]):
            q = self.quantiles[at, j]
            out.append(np.unique(q[np.isfinite(q)]))
        return out

    def fill_values(self) -> np.ndarray:
        """The imputed value of each column: its median, 0 when it has no value at all."""
        return np.where(np.isfinite(self.median), self.median, 0.0)

    def after_impute(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the columns as the impute layer outputs them: gaps filled
        with the median, then a 0/1 flag per :attr:`flagged` column."""
        n = max(self.rows, 1)
        med = self.fill_values()
        miss = self.rows - self.count
        mean = (self.count * self.mean + miss * med) / n
        m2 = self.m2 + self.count * (self.mean - mean) ** 2 + miss * (med - mean) ** 2
        p = miss[self.flagged] / n
        return np.concatenate([mean, p]), np.concatenate([np.sqrt(m2 / n), np.sqrt(p * (1 - p))])

    def plain(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the finite values of each column."""
        return self.mean.copy(), self.std

    def to_json(self) -> dict:
        plain = lambda v: [None if not np.isfinite(m) else float(m) for m in v]  # noqa: E731
        doc = {
            "rows": self.rows,
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "median": plain(self.median),
        }
        if self.quantiles is not None:
            doc["quantiles"] = [plain(row) for row in self.quantiles]
        return doc

    @classmethod
    def from_json(cls, d: dict) -> "ColumnStats":
        arr = lambda v: np.asarray([np.nan if m is None else m for m in v], np.float64)  # noqa: E731
        q = np.stack([arr(row) for row in d["quantiles"]]) if d.get("quantiles") else None
        return cls(
            int(d["rows"]),
            np.asarray(d["count"], np.int64),
            np.asarray(d["mean"], np.float64),
            np.asarray(d["m2"], np.float64),
            arr(d["median"]),
            q,
        )


def _as_matrix(x: np.ndarray) -> np.ndarray:
    """float64 [rows, columns]; a 1-D array is one column, and no rows of no columns stays so
    (a streamed table without a number column)."""
    x = np.asarray(x, np.float64)
    return x if x.ndim == 2 else x.reshape(-1, 1) if x.ndim == 1 else x.reshape(len(x), -1)


def grid_quantiles(x: np.ndarray) -> np.ndarray:
    """[GRID, columns] quantiles of the finite values of ``x`` (NaN where a column has
    none), from at most SAMPLE_FOR_QUANTILES rows taken evenly."""
    import warnings

    x = _as_matrix(x)
    if len(x) > SAMPLE_FOR_QUANTILES:
        x = x[np.linspace(0, len(x) - 1, SAMPLE_FOR_QUANTILES).astype(np.int64)]
    xf = np.where(np.isfinite(x), x, np.nan)
    if not len(xf):
        return np.full((GRID, x.shape[1]), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(xf, np.linspace(0, 1, GRID), axis=0)


_TRUE, _FALSE = frozenset(("true",)), frozenset(("false",))  # what pandas reads as a boolean column


def parse_numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells of a number column read as text -> (float32 values, bad mask).

    An empty cell, None or a missing-value spelling (``NA``, ``null``, ...) is
    missing (NaN); ``true``/``false`` are 1/0, as in a boolean training column;
    anything else that is not a number (``forty``, ``[1, 2]``) is *bad*: not
    missing, wrong."""
    import pandas as pd

    from bigmodel_cli.features.category import NA_SPELLINGS

    s = pd.Series(values, dtype=object)
    out = pd.to_numeric(s, errors="coerce").to_numpy(np.float32, na_value=np.nan)
    unparsed = np.flatnonzero(np.isnan(out) & s.notna().to_numpy())
    bad = np.zeros(len(out), bool)
    for i in unparsed.tolist():  # only cells that did not parse: rare, so a Python loop is fine
        v = values[i]
        text = v.strip() if isinstance(v, str) else None
        if text is None:
            bad[i] = not (isinstance(v, float) and math.isnan(v))
        elif text in NA_SPELLINGS:
            continue
        elif text.lower() in _TRUE or text.lower() in _FALSE:
            out[i] = 1.0 if text.lower() in _TRUE else 0.0
        elif text.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
            continue  # parsed as such by pandas already; NaN/inf are missing to the model
        else:
            bad[i] = True
    return out, bad


class NumberType(ColumnType):
    """A float column: no encoder of its own; the number columns together become the
    model's ``features`` matrix, scaled, imputed or binned inside the model from
    their :class:`ColumnStats` (``model/builders.preprocessing``)."""

    name = "number"
    spellings = ("number",)
    encoded = False
    describe = "a float column: imputed, standardised or binned inside the model"

    def check(self, cells: Sequence[Any], spelling: str) -> tuple[Any, np.ndarray | None]:
        return parse_numbers(np.asarray(cells, dtype=object))

    def not_a(self, spelling: str) -> str:
        return "a number"

    def owns(self, encoder: Any) -> bool:
        return False

    def encode(self, encoder: Any, parsed: Any) -> np.ndarray:
        return np.asarray(parsed, np.float32).reshape(-1, 1)


NUMBER = NumberType()


def impute_layer(x, stats: ColumnStats, name: str = "impute"):
    """Missing numbers (NaN, inf) -> the column's training median, plus a 0/1
    flag column for each column that had missing values in training."""
    med = stats.fill_values()
    return impute_class()(
        medians=med.astype(float).tolist(), flagged=stats.flagged, name=name, dtype="float32"
    )(x)


@functools.lru_cache(maxsize=1)
def impute_class():
    """The Impute layer class, registered with Keras on first use (like text.layers())."""
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Impute(keras.layers.Layer):
        """[batch, n] with NaN/inf -> [batch, n + len(flagged)]:
        training medians, then missing flags."""

        def __init__(self, medians: list[float], flagged: list[int], **kwargs: Any):
            super().__init__(**kwargs)
            self.medians, self.flagged = [float(m) for m in medians], [int(j) for j in flagged]

        def call(self, x):
            import tensorflow as tf

            # One tf.where per test, each straight on IsNaN/IsInf: tf2onnx rewrites
            # where(not(is_finite(x)), m, x) into arithmetic, and NaN * 0 is NaN.
            fill = tf.broadcast_to(tf.constant(self.medians, x.dtype), tf.shape(x))
            nan, inf = tf.math.is_nan(x), tf.math.is_inf(x)
            filled = tf.where(inf, fill, tf.where(nan, fill, x))
            if not self.flagged:
                return filled
            flags = tf.gather(tf.cast(nan, x.dtype) + tf.cast(inf, x.dtype), self.flagged, axis=1)
            return tf.concat([filled, flags], axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], input_shape[1] + len(self.flagged))

        def get_config(self):
            return {**super().get_config(), "medians": self.medians, "flagged": self.flagged}

    return Impute
