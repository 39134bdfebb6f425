"""Date columns: a date string -> 8 numbers, written twice (TensorFlow ops and numpy) to agree.

Formats (``data.columns``): ``date_iso`` (``2024-03-01``, ``2024/3/1``, an ISO
time after it is ignored), ``date_dmy`` (``01/03/2024``, ``1.3.2024``) and
``date_mdy`` (``03/01/2024``). ``date`` asks training to choose from the values:
ISO, or the one of day-first and month-first that reads every value; when both
do (every day is 12 or less) the column is refused, naming the override.

The parts, each a float32: the year and the days since 1970-01-01, both
standardised with the training rows' mean and deviation, and the month, the
day of the week and the day of the year as (sin, cos) pairs. A missing or
unreadable date is NaN in every part; inside the model the Impute layer makes
that 0 plus a missing flag (``data.missing: impute``, init --data's default).

:class:`DateEncoder` is the Python side (training, and the ONNX fast path that
runs no string ops); :func:`layers` holds ``DateParts``, the Keras layer doing
the same inside ``model.keras``.

Example::

    enc = DateEncoder.fit(["2024-03-01", "2023-12-24", ""], "date")
    enc.ids(["2024-02-29"])     # float32 [1, 8]
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Iterable, Sequence

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.features.base import ColumnType

FORMATS = ("date_iso", "date_dmy", "date_mdy")
PARTS = 8
# The patterns both sides use: (first, second, third) groups and which is year/month/day.
ISO = r"\s*([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})(?:[T ][0-9:.+\-Z ]*)?\s*"
SLASHED = r"\s*([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})(?:[T ][0-9:.+\-Z ]*)?\s*"
_ISO, _SLASHED = re.compile(ISO), re.compile(SLASHED)
ORDER = {
    "date_iso": (0, 1, 2),
    "date_dmy": (2, 1, 0),
    "date_mdy": (2, 0, 1),
}  # group index of year, month, day
INFER_SHARE = 0.95  # of the present values that must read as dates for a column to be one


def _groups(values: Iterable[Any], fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """int64 [n, 3] of the pattern's groups, and whether the value matched."""
    pattern = _ISO if fmt == "date_iso" else _SLASHED
    out, ok = [], []
    for v in values:
        m = pattern.fullmatch(v) if isinstance(v, str) else None
        ok.append(m is not None)
        out.append([int(g) for g in m.groups()] if m else [0, 0, 0])
    return np.asarray(out, np.int64).reshape(-1, 3), np.asarray(ok, bool)


def graph_spec(fmt: str) -> tuple[str, str, list[str], list[str]]:
    """What a graph that parses ``fmt`` needs (model/onnx_raw.py): (the pattern a
    value matches, a valid value to stand in for one that does not, the separators
    between the groups, that value's three groups in order)."""
    if fmt == "date_iso":
        return ISO, "1970-1-1", ["-", "/"], ["1970", "1", "1"]
    return SLASHED, "1/1/1970", ["-", "/", "."], ["1", "1", "1970"]


def days_from_civil(y: Any, m: Any, d: Any, xp: Any = np) -> Any:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm);
    ``xp``: numpy, or a namespace of the same integer ops (the TensorFlow side)."""
    y = xp.where(m <= 2, y - 1, y)
    era = xp.floor_divide(y, 400)
    yoe = y - era * 400
    mp = xp.where(m > 2, m - 3, m + 9)
    doy = xp.floor_divide(153 * mp + 2, 5) + d - 1
    doe = yoe * 365 + xp.floor_divide(yoe, 4) - xp.floor_divide(yoe, 100) + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    table = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
    return table[np.clip(m, 1, 12) - 1] + ((m == 2) & leap)


def parse(values: Sequence[Any], fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ymd int64 [n, 3], valid [n], missing [n]): missing is an empty cell or an NA
    spelling; a present value that is not a real date in ``fmt`` is neither valid nor missing."""
    from bigmodel_cli.features.category import canonical

    strings = [None if canonical(v) is None else str(v) for v in values]
    missing = np.array([s is None for s in strings], bool)
    groups, matched = _groups(strings, fmt)
    yi, mi, di = ORDER[fmt]
    ymd = groups[:, [yi, mi, di]]
    y, m, d = ymd[:, 0], ymd[:, 1], ymd[:, 2]
    valid = matched & (m >= 1) & (m <= 12) & (d >= 1) & (d <= _days_in_month(y, m))
    return ymd, valid, missing


def resolve_format(values: Sequence[Any], column: str, declared: str = "date") -> str:
    """The concrete format of a date column: ``declared`` itself, or the one that
    reads the values; an ambiguous day/month order is refused in one line."""
    if declared in FORMATS:
        return declared
    share = {f: _share(values, f) for f in FORMATS}
    if share["date_iso"] >= INFER_SHARE:
        return "date_iso"
    dmy, mdy = share["date_dmy"] >= INFER_SHARE, share["date_mdy"] >= INFER_SHARE
    if dmy and mdy:
        sample = next((str(v) for v in values if _SLASHED.fullmatch(str(v))), "")
        raise DataError(
            f"date column '{column}' is ambiguous: every value (such as {sample!r}) reads "
            "as day/month/year and as month/day/year",
            hint=f"say which in data.columns: {{{column}: date_dmy}} or {{{column}: date_mdy}} "
            f"(e.g. --set data.columns.{column}=date_dmy)",
        )
    if dmy or mdy:
        return "date_dmy" if dmy else "date_mdy"
    best = max(share, key=share.get)  # type: ignore[arg-type]
    raise DataError(
        f"column '{column}' is typed date but only {share[best]:.0%} of its values read as dates",
        hint="set data.columns to category or text for it, or fix the values",
    )


def _share(values: Sequence[Any], fmt: str) -> float:
    _, valid, missing = parse(values, fmt)
    present = int((~missing).sum())
    return float(valid.sum()) / present if present else 0.0


def looks_like_dates(strings: Sequence[str]) -> tuple[bool, str]:
    """Whether the present values of a text column are dates, and how they read."""
    sample = list(strings[:2000])
    share = {f: _share(sample, f) for f in FORMATS}
    if share["date_iso"] >= INFER_SHARE:
        return True, "ISO dates (yyyy-mm-dd)"
    dmy, mdy = share["date_dmy"] >= INFER_SHARE, share["date_mdy"] >= INFER_SHARE
    if dmy and mdy:
        return True, "dates, ambiguous: dd/mm/yyyy or mm/dd/yyyy (set date_dmy or date_mdy)"
    if dmy or mdy:
        return True, f"dates ({'dd/mm/yyyy' if dmy else 'mm/dd/yyyy'})"
    return False, ""


def parts_from_ymd(ymd: np.ndarray, valid: np.ndarray, stats: Sequence[float]) -> np.ndarray:
    """float32 [n, 8]; NaN rows where not valid. ``stats``: year mean, std, days mean, std."""
    y, m, d = (ymd[:, i].astype(np.int64) for i in range(3))
    m_safe, d_safe = np.where(valid, m, 1), np.where(valid, d, 1)
    days = days_from_civil(y, m_safe, d_safe).astype(np.float64)
    jan1 = days_from_civil(y, np.ones_like(y), np.ones_like(y)).astype(np.float64)
    dow = np.mod(days + 4, 7)
    two_pi = 2 * math.pi
    cols = [
        (y - stats[0]) / stats[1],
        np.sin(two_pi * (m_safe - 1) / 12),
        np.cos(two_pi * (m_safe - 1) / 12),
        np.sin(two_pi * dow / 7),
        np.cos(two_pi * dow / 7),
        np.sin(two_pi * (days - jan1) / 366),
        np.cos(two_pi * (days - jan1) / 366),
        (days - stats[2]) / stats[3],
    ]
    out = np.stack(cols, axis=1).astype(np.float32)
    out[~valid] = np.nan
    return out


class DateEncoder:
    """Python side of a date column: strings -> float32 parts [rows, 8]."""

    kind = "date"

    def __init__(self, fmt: str, stats: Sequence[float]):
        self.format, self.stats = fmt, [float(v) for v in stats]

    @classmethod
    def fit(
        cls, values: Sequence[Any], declared: str = "date", column: str = "date"
    ) -> "DateEncoder":
        values = list(values)
        fmt = resolve_format(values, column, declared)
        ymd, valid, _ = parse(values, fmt)
        if not valid.any():
            raise DataError(f"date column '{column}' has no readable date in the training rows")
        y = ymd[valid, 0].astype(np.float64)
        days = days_from_civil(ymd[valid, 0], ymd[valid, 1], ymd[valid, 2]).astype(np.float64)
        sd = lambda v: float(v.std()) if v.std() > 0 else 1.0  # noqa: E731
        return cls(fmt, [float(y.mean()), sd(y), float(days.mean()), sd(days)])

    def ids(self, values: Sequence[Any]) -> np.ndarray:
        ymd, valid, _ = parse(list(values), self.format)
        return self.parts(ymd, valid)

    def parts(self, ymd: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The parts of values already parsed (:func:`parse`)."""
        return parts_from_ymd(ymd, valid, self.stats)

    @property
    def size(self) -> int:
        return PARTS

    def to_json(self) -> dict[str, Any]:
        return {"kind": "date", "format": self.format, "stats": self.stats}


@functools.lru_cache(maxsize=1)
def layers():
    """(DateParts,): the Keras layer, registered on first use."""
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class DateParts(keras.layers.Layer):
        """Raw strings [batch] -> float32 [batch, 8], as :class:`DateEncoder`."""

        # a raw column in, ids out: the model around its core (builders.core_of)
        reads_raw_column = True

        def __init__(self, format: str, stats: list[float], **kwargs: Any):
            super().__init__(**kwargs)
            self.format, self.stats = str(format), [float(v) for v in stats]

        def call(self, inputs):
            import tensorflow as tf

            s = tf.reshape(tf.convert_to_tensor(inputs), [-1])
            pattern = ISO if self.format == "date_iso" else SLASHED
            matched = tf.strings.regex_full_match(s, pattern)

            def group(k):
                return tf.strings.to_number(
                    tf.where(
                        matched, tf.strings.regex_replace(s, "^" + pattern + "$", rf"\{k}"), "0"
                    ),
                    tf.int64,
                )

            g = [group(k) for k in (1, 2, 3)]
            yi, mi, di = ORDER[self.format]
            y, m, d = g[yi], g[mi], g[di]
            leap = tf.logical_or(
                tf.logical_and(tf.equal(y % 4, 0), tf.not_equal(y % 100, 0)), tf.equal(y % 400, 0)
            )
            dim = tf.gather(
                tf.constant([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], tf.int64),
                tf.clip_by_value(m, 1, 12) - 1,
            ) + tf.cast(tf.logical_and(tf.equal(m, 2), leap), tf.int64)
            valid = matched & (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)
            one = tf.ones_like(m)
            m, d = tf.where(valid, m, one), tf.where(valid, d, one)
            days = tf.cast(days_from_civil(y, m, d, _TFInt), tf.float64)
            jan1 = tf.cast(days_from_civil(y, one, one, _TFInt), tf.float64)
            dow = tf.math.floormod(days + 4, 7)
            mf, two_pi, st = tf.cast(m - 1, tf.float64), 2 * math.pi, self.stats
            cols = [
                (tf.cast(y, tf.float64) - st[0]) / st[1],
                tf.sin(two_pi * mf / 12),
                tf.cos(two_pi * mf / 12),
                tf.sin(two_pi * dow / 7),
                tf.cos(two_pi * dow / 7),
                tf.sin(two_pi * (days - jan1) / 366),
                tf.cos(two_pi * (days - jan1) / 366),
                (days - st[2]) / st[3],
            ]
            out = tf.cast(tf.stack(cols, axis=1), tf.float32)
            nan = tf.fill(tf.shape(out), tf.constant(float("nan"), tf.float32))
            return tf.where(tf.expand_dims(valid, 1), out, nan)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], PARTS)

        def get_config(self):
            return {**super().get_config(), "format": self.format, "stats": self.stats}

    return (DateParts,)


class _TFInt:
    """The integer ops :func:`days_from_civil` needs, on TensorFlow tensors."""

    @staticmethod
    def floor_divide(a, b):
        import tensorflow as tf

        return tf.math.floordiv(a, b)

    @staticmethod
    def where(c, a, b):
        import tensorflow as tf

        return tf.where(c, a, b)


SHOWN = {"date_iso": "yyyy-mm-dd", "date_dmy": "dd/mm/yyyy", "date_mdy": "mm/dd/yyyy"}


class DateType(ColumnType):
    """A date column: eight parts (:class:`DateEncoder`); a missing or unreadable
    date is NaN in each, 0 plus a missing flag inside the model."""

    name = "date"
    spellings = ("date", *FORMATS)
    saved_as = ("date",)
    describe = "year, days since 1970 and cyclic month/weekday/day-of-year parts"
    raw_onnx_inside = True

    def fit(self, values: Sequence[Any], column: str, spelling: str, cfg: Any) -> Any:
        return DateEncoder.fit(values, spelling, column)

    def resolved(self, encoder: Any, spelling: str) -> str:
        return encoder.format

    def check(self, cells: Sequence[Any], spelling: str) -> tuple[Any, np.ndarray | None]:
        """A present value that does not read in the column's format is bad; parsed
        once, so the encoding below reads the same parse. (An unresolved ``date``,
        before training chose a format, checks nothing.)"""
        if spelling not in FORMATS:
            return cells, None
        ymd, valid, missing = parse(cells, spelling)
        return (ymd, valid), ~valid & ~missing

    def not_a(self, spelling: str) -> str:
        return f"a date ({SHOWN[spelling]})" if spelling in SHOWN else "a date"

    def encode(self, encoder: Any, parsed: Any) -> np.ndarray:
        if isinstance(parsed, tuple):
            return encoder.parts(*parsed)
        return encoder.ids(parsed)

    def to_doc(self, encoder: Any, input_name: str) -> dict[str, Any]:
        return {**encoder.to_json(), "input": input_name}

    def from_doc(self, doc: dict[str, Any], fold_table: Any) -> Any:
        return DateEncoder(doc["format"], doc["stats"])

    def core_input(self, encoder: Any, name: str, cfg: Any, context: dict[str, Any]):
        """Its parts, NaN when missing: 0 plus a missing flag."""
        import keras

        from bigmodel_cli.features.number import impute_class

        ids = keras.Input(shape=(encoder.size,), name=name, dtype="float32")
        impute = impute_class()(
            medians=[0.0] * encoder.size, flagged=[0], name=f"date_{name[4:]}", dtype="float32"
        )
        return ids, impute(ids)

    def raw_layer(self, encoder: Any, name: str):
        return layers()[0](encoder.format, encoder.stats, name=f"dateparts_{name}")

    def raw_onnx(self, encoder: Any, column: str, output: str, id_type: int):
        from bigmodel_cli.features.onnx_graph import DATE_OPSET, Builder, date_parts_graph

        b = Builder("bigmodel_raw/" + column)
        fmt = encoder.format
        date_parts_graph(b, column, encoder, output, graph_spec(fmt), ORDER[fmt])
        return b.nodes, b.consts, {"": DATE_OPSET}


DATE = DateType()
