"""An exported ONNX graph that takes the user's raw columns (issue 25, item 12).

``inference.onnx``, the run's fast path, takes what Python makes of the raw
columns: one float matrix of the number columns and integer ids per category,
text or date column (predict and serve tokenise outside the graph). For a file
that any ONNX runtime (C#, Java, JavaScript, C++) can use with the user's own
values, :func:`with_raw_inputs` puts the category lookups into the graph:

- each number column becomes a float input of its own, ``[N, 1]``, named by the
  column; ``NaN`` is a missing number (imputed inside the model, as predict does
  with an empty cell), and the columns are concatenated into the core's matrix;
- each category column becomes a string input ``[N, 1]``, named by the column, and
  an ``ai.onnx.ml`` ``LabelEncoder`` maps it to the id :class:`CategoryEncoder`
  gives: the training values to their ids, the missing spellings (``""``, ``NA``,
  ``null``, ...) to the missing id, anything else to the unseen id. An integer
  value matches written as ``7`` or ``7.0``; in a yes/no column every spelling of
  true and false in any case (``Yes``, ``FALSE``, ``y``) matches, as in Python (the
  cases are keys of their own: ONNX's ``StringNormalizer`` needs a locale that a
  machine may not have). What Python does and the graph does not: strip spaces
  around a value, and read ``07`` or ``+7`` as ``7``.

- each date column becomes a string input ``[N, 1]``, parsed inside the graph
  (opset 20's ``RegexFullMatch``, ``StringSplit`` and arithmetic) into the parts
  :class:`DateEncoder` makes: the same pattern decides what is a date, and what
  is not (or is missing) is NaN, imputed inside the model. A date whose two
  separators differ (``2024-3/1``) reads as missing here and as a date in Python.

Text columns keep their ids inputs (a tokeniser is not an ONNX operator); the
export writes their encoders beside the file and says so. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_cli.features.category import (
    FALSE_SPELLINGS,
    MISSING,
    NA_SPELLINGS,
    TRUE_SPELLINGS,
    UNSEEN,
    CategoryEncoder,
)

ML_DOMAIN = "ai.onnx.ml"
PREFIX = "bigmodel_raw/"


def category_keys(enc: CategoryEncoder) -> dict[str, int]:
    """Every string the graph maps to an id other than 'unseen' (after lower-casing, for a yes/no column)."""
    keys: dict[str, int] = {}
    for i, v in enumerate(enc.vocabulary):
        keys[v] = i + 2
        if _is_int(v):
            keys.setdefault(v + ".0", i + 2)
    if enc.boolean:  # every case of every spelling, as Python lower-cases (ASCII: no locale needed)
        for spellings, key in ((TRUE_SPELLINGS, "true"), (FALSE_SPELLINGS, "false")):
            for spelling in spellings:
                for cased in _cases(spelling):
                    keys[cased] = enc.index.get(key, UNSEEN)
    for na in NA_SPELLINGS:
        keys[na] = MISSING
    return keys


def _cases(word: str) -> list[str]:
    """Every upper/lower-case spelling of a short ASCII word (``yes``: 8 of them)."""
    from itertools import product

    return [
        "".join(p)
        for p in product(*[(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in word])
    ]


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


def with_raw_inputs(
    model: Any,
    numeric: list[str],
    categories: dict[str, CategoryEncoder],
    ids_names: dict[str, str],
    dates: dict[str, Any] | None = None,
) -> Any:
    """The core ONNX ``model`` (a ModelProto) with raw inputs in front (see the module)."""
    import onnx
    from onnx import TensorProto, helper

    dates = dates or {}
    if dates:  # the string operators dates need came in opset 20
        from onnx import version_converter

        model = version_converter.convert_version(model, max(DATE_OPSET, _opset(model)))
        model.ir_version = max(model.ir_version, 9)
    graph = model.graph
    replaced = ({"features"} if numeric else set()) | {ids_names[c] for c in [*categories, *dates]}
    core_inputs = {i.name: i for i in graph.input}
    missing = replaced - set(core_inputs)
    if missing:
        raise ValueError(f"the core graph has no input {sorted(missing)[0]}")
    nodes, inputs = [], []
    if numeric:
        for c in numeric:
            inputs.append(helper.make_tensor_value_info(c, TensorProto.FLOAT, ["N", 1]))
        nodes.append(
            helper.make_node(
                "Concat", list(numeric), ["features"], axis=1, name=PREFIX + "features"
            )
        )
    id_type = (
        core_inputs[ids_names[next(iter(categories))]].type.tensor_type.elem_type
        if categories
        else TensorProto.INT32
    )
    for c, enc in categories.items():
        inputs.append(helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]))
        keys = category_keys(enc)
        p = PREFIX + c
        nodes += [
            helper.make_node(
                "LabelEncoder",
                [c],
                [p + "/ids64"],
                domain=ML_DOMAIN,
                keys_strings=list(keys),
                values_int64s=list(keys.values()),
                default_int64=UNSEEN,
                name=p + "/lookup",
            ),
            helper.make_node("Cast", [p + "/ids64"], [ids_names[c]], to=id_type, name=p + "/cast"),
        ]
    for c, enc in dates.items():
        inputs.append(helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]))
        b = _Builder(PREFIX + c)
        date_parts_graph(b, c, enc, ids_names[c])
        nodes += b.nodes
        graph.initializer.extend(b.consts)
    kept = [i for i in graph.input if i.name not in replaced]
    del graph.input[:]
    graph.input.extend(inputs + kept)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    if categories:
        ml = [o for o in model.opset_import if o.domain == ML_DOMAIN]
        if ml:
            ml[0].version = max(ml[0].version, 2)
        else:
            model.opset_import.append(helper.make_opsetid(ML_DOMAIN, 2))
    onnx.checker.check_model(model)
    return model


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def raw_feed(
    numeric: list[str],
    categories: list[str],
    ids: dict[str, np.ndarray],
    numbers: np.ndarray | None,
    raw: dict[str, Any],
) -> dict[str, np.ndarray]:
    """What a client feeds the raw graph for sample rows: each number column's
    values, each category's values as the text a file holds, the other ids as they are."""
    feed: dict[str, np.ndarray] = dict(ids)
    for j, c in enumerate(numeric):
        feed[c] = np.ascontiguousarray(numbers[:, j : j + 1], dtype=np.float32)
    for c in categories:
        feed[c] = np.asarray([[_as_text(v)] for v in raw[c]], dtype=object)
    return feed


def _as_text(v: Any) -> str:
    """A cell as a client would send it: missing as '', 7.0 as 7, True as true."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        if float(v).is_integer():
            return str(int(v))
    return str(v)


# ------------------------------------------------------------------ dates

DATE_OPSET = 20  # StringSplit, StringConcat and RegexFullMatch


class _Builder:
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


def date_parts_graph(b: _Builder, column: str, enc: Any, output: str) -> None:
    """Nodes from the string input ``column`` [N, 1] to ``output``, the float32
    [N, 8] parts :class:`DateEncoder` makes (NaN where the value is not a date)."""
    import math

    from onnx import TensorProto

    from bigmodel_cli.features.date import ORDER, graph_spec

    pattern, sentinel, seps, safe = graph_spec(enc.format)
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
    yi, mi, di = ORDER[enc.format]
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


def _floor_div(b: _Builder, a: str, k: float) -> str:
    return b.op("Floor", b.op("Div", a, b.const(float(k))))


def _mod(b: _Builder, a: str, k: float) -> str:
    return b.op("Sub", a, b.op("Mul", _floor_div(b, a, k), b.const(float(k))))


def _days_from_civil(b: _Builder, y: str, m: str, d: str) -> str:
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


def _days_in_month(b: _Builder, y: str, m: str) -> str:
    def divisible(k: float) -> str:
        return b.op("Equal", _mod(b, y, k), b.const(0.0))

    leap = b.op("Or", b.op("And", divisible(4), b.op("Not", divisible(100))), divisible(400))
    index = b.op(
        "Cast", b.op("Sub", b.op("Clip", m, b.const(1.0), b.const(12.0)), b.const(1.0)), to=7
    )  # INT64
    base = b.op("Gather", b.const([31.0, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]), index)
    feb = b.op("Cast", b.op("And", b.op("Equal", m, b.const(2.0)), leap), to=11)  # DOUBLE
    return b.op("Add", base, feb)
