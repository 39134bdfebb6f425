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

Text and date columns keep their ids inputs (their tokenisers and date parsers
are not ONNX operators); the export writes those columns' encoders beside the
file and says so. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_cli.features.category import FALSE_SPELLINGS, MISSING, NA_SPELLINGS, TRUE_SPELLINGS, UNSEEN, CategoryEncoder

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

    return ["".join(p) for p in product(*[(ch.lower(), ch.upper()) if ch.isalpha() else (ch,) for ch in word])]


def _is_int(s: str) -> bool:
    return s.lstrip("-").isdigit()


def with_raw_inputs(model: Any, numeric: list[str], categories: dict[str, CategoryEncoder], ids_names: dict[str, str]) -> Any:
    """The core ONNX ``model`` (a ModelProto) with raw inputs in front (see the module)."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    replaced = ({"features"} if numeric else set()) | {ids_names[c] for c in categories}
    core_inputs = {i.name: i for i in graph.input}
    missing = replaced - set(core_inputs)
    if missing:
        raise ValueError(f"the core graph has no input {sorted(missing)[0]}")
    nodes, inputs = [], []
    if numeric:
        for c in numeric:
            inputs.append(helper.make_tensor_value_info(c, TensorProto.FLOAT, ["N", 1]))
        nodes.append(helper.make_node("Concat", list(numeric), ["features"], axis=1, name=PREFIX + "features"))
    id_type = core_inputs[ids_names[next(iter(categories))]].type.tensor_type.elem_type if categories else TensorProto.INT32
    for c, enc in categories.items():
        inputs.append(helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]))
        keys = category_keys(enc)
        p = PREFIX + c
        nodes += [
            helper.make_node("LabelEncoder", [c], [p + "/ids64"], domain=ML_DOMAIN, keys_strings=list(keys), values_int64s=list(keys.values()), default_int64=UNSEEN, name=p + "/lookup"),
            helper.make_node("Cast", [p + "/ids64"], [ids_names[c]], to=id_type, name=p + "/cast"),
        ]
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


def raw_feed(numeric: list[str], categories: list[str], ids: dict[str, np.ndarray], numbers: np.ndarray | None, raw: dict[str, Any]) -> dict[str, np.ndarray]:
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
