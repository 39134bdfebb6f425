"""ONNX subgraphs the column types put in front of a raw-column export
(:meth:`ColumnType.raw_onnx`): a small node builder and the date parser,
arithmetic written in ONNX operators to agree with :class:`DateEncoder`.
Imports onnx only when a graph is built; never TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DATE_OPSET = 20  # StringSplit, StringConcat and RegexFullMatch


class Builder:
    """Nodes and constants of one subgraph, with names under a prefix."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self.consts, self.n = prefix, [], [], 0

    def const(self, value: Any, dtype: Any = None) -> str:
        from onnx import numpy_helper

        self.n += 1
        name = f"{self.prefix}/c{self.n}"
        self.consts.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        from onnx import helper

        self.n += 1
        names = [
            f"{self.prefix}/{kind.lower()}{self.n}" + (f"_{i}" if outputs > 1 else "")
            for i in range(outputs)
        ]
        self.nodes.append(
            helper.make_node(
                kind, list(inputs), names, name=f"{self.prefix}/{kind}{self.n}", **attrs
            )
        )
        return names if outputs > 1 else names[0]


def date_parts_graph(
    b: Builder, column: str, enc: Any, output: str, spec: tuple, order: tuple[int, int, int]
) -> None:
    """Nodes from the string input ``column`` [N, 1] to ``output``, the float32
    [N, 8] parts :class:`DateEncoder` makes (NaN where the value is not a date)."""
    import math

    from onnx import TensorProto

    pattern, sentinel, seps, safe = spec  # features.date.graph_spec
    x = b.op("Reshape", column, b.const([-1], np.int64))
    matched = b.op("RegexFullMatch", x, pattern=pattern)
    s = b.op("Where", matched, x, b.const([sentinel], object))
    # the date alone: what comes before a 'T' or a space (a time, or padding)
    s = b.op(
        "Gather",
        b.op(
            "StringSplit", b.op("StringConcat", s, b.const(["T"], object)), outputs=2, delimiter="T"
        )[0],
        b.const(0, np.int64),
        axis=1,
    )
    s = b.op(
        "Gather",
        b.op("StringSplit", b.op("StringConcat", s, b.const([" x"], object)), outputs=2)[0],
        b.const(0, np.int64),
        axis=1,
    )
    # one extra row with every separator, so that each split below has 3 columns
    s = b.op("Concat", s, b.const(["0-0-0/0/0.0.0"], object), axis=0)
    pieces, found = None, None
    for sep in reversed(seps):  # the first separator that makes 3 pieces of a row wins
        p, z = b.op("StringSplit", s, outputs=2, delimiter=sep)
        three = b.op("Unsqueeze", b.op("Equal", z, b.const(3, np.int64)), b.const([1], np.int64))
        p3 = b.op(
            "Slice", p, b.const([0], np.int64), b.const([3], np.int64), b.const([1], np.int64)
        )
        pieces = p3 if pieces is None else b.op("Where", three, p3, pieces)
        found = three if found is None else b.op("Or", three, found)
    n = b.op(
        "Sub", b.op("Shape", s, start=0, end=1), b.const([1], np.int64)
    )  # the rows, without the extra one
    pieces = b.op("Slice", pieces, b.const([0], np.int64), n, b.const([0], np.int64))
    found = b.op("Slice", found, b.const([0], np.int64), n, b.const([0], np.int64))
    pieces = b.op(
        "Where", found, pieces, b.const([safe], object)
    )  # mixed separators: not a date, and no text to cast
    g = b.op("Cast", pieces, to=TensorProto.DOUBLE)
    yi, mi, di = order
    y, m, d = (b.op("Gather", g, b.const(i, np.int64), axis=1) for i in (yi, mi, di))
    ok = b.op("And", b.op("Squeeze", found, b.const([1], np.int64)), matched)
    ok = b.op(
        "And",
        ok,
        b.op("And", b.op("GreaterOrEqual", m, b.const(1.0)), b.op("LessOrEqual", m, b.const(12.0))),
    )
    ok = b.op(
        "And",
        ok,
        b.op(
            "And",
            b.op("GreaterOrEqual", d, b.const(1.0)),
            b.op("LessOrEqual", d, _days_in_month(b, y, m)),
        ),
    )
    one = b.const(1.0)
    m = b.op("Where", ok, m, one)
    d = b.op("Where", ok, d, one)
    days = _days_from_civil(b, y, m, d)
    jan1 = _days_from_civil(b, y, one, one)
    dow = _mod(b, b.op("Add", days, b.const(4.0)), 7.0)
    two_pi = 2 * math.pi

    def ring(v: str, period: float) -> list[str]:
        a = b.op("Mul", v, b.const(two_pi / period))
        return [b.op("Sin", a), b.op("Cos", a)]

    st = enc.stats
    cols = [
        b.op("Div", b.op("Sub", y, b.const(st[0])), b.const(st[1])),
        *ring(b.op("Sub", m, one), 12.0),
        *ring(dow, 7.0),
        *ring(b.op("Sub", days, jan1), 366.0),
        b.op("Div", b.op("Sub", days, b.const(st[2])), b.const(st[3])),
    ]
    parts = b.op("Concat", *[b.op("Unsqueeze", c, b.const([1], np.int64)) for c in cols], axis=1)
    parts = b.op(
        "Where", b.op("Unsqueeze", ok, b.const([1], np.int64)), parts, b.const(float("nan"))
    )
    b.nodes.append(
        __import__("onnx").helper.make_node(
            "Cast", [parts], [output], to=TensorProto.FLOAT, name=f"{b.prefix}/parts"
        )
    )


def _floor_div(b: Builder, a: str, k: float) -> str:
    return b.op("Floor", b.op("Div", a, b.const(float(k))))


def _mod(b: Builder, a: str, k: float) -> str:
    return b.op("Sub", a, b.op("Mul", _floor_div(b, a, k), b.const(float(k))))


def _days_from_civil(b: Builder, y: str, m: str, d: str) -> str:
    """features.date.days_from_civil, in doubles."""
    y = b.op("Where", b.op("LessOrEqual", m, b.const(2.0)), b.op("Sub", y, b.const(1.0)), y)
    era = _floor_div(b, y, 400)
    yoe = b.op("Sub", y, b.op("Mul", era, b.const(400.0)))
    mp = b.op(
        "Where",
        b.op("Greater", m, b.const(2.0)),
        b.op("Sub", m, b.const(3.0)),
        b.op("Add", m, b.const(9.0)),
    )
    doy = b.op(
        "Sub",
        b.op(
            "Add", _floor_div(b, b.op("Add", b.op("Mul", mp, b.const(153.0)), b.const(2.0)), 5), d
        ),
        b.const(1.0),
    )
    doe = b.op(
        "Add",
        b.op(
            "Sub",
            b.op("Add", b.op("Mul", yoe, b.const(365.0)), _floor_div(b, yoe, 4)),
            _floor_div(b, yoe, 100),
        ),
        doy,
    )
    return b.op("Sub", b.op("Add", b.op("Mul", era, b.const(146097.0)), doe), b.const(719468.0))


def _days_in_month(b: Builder, y: str, m: str) -> str:
    def divisible(k: float) -> str:
        return b.op("Equal", _mod(b, y, k), b.const(0.0))

    leap = b.op("Or", b.op("And", divisible(4), b.op("Not", divisible(100))), divisible(400))
    index = b.op(
        "Cast", b.op("Sub", b.op("Clip", m, b.const(1.0), b.const(12.0)), b.const(1.0)), to=7
    )  # INT64
    base = b.op("Gather", b.const([31.0, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]), index)
    feb = b.op("Cast", b.op("And", b.op("Equal", m, b.const(2.0)), leap), to=11)  # DOUBLE
    return b.op("Add", base, feb)
