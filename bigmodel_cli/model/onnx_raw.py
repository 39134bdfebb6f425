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

from bigmodel_cli.features import registry

ML_DOMAIN = "ai.onnx.ml"
PREFIX = "bigmodel_raw/"


def inside_graph(encoders: dict[str, Any]) -> list[str]:
    """The encoded columns whose step goes into the raw graph (categories, dates);
    the others (text) keep their ids input."""
    return [c for c, enc in encoders.items() if registry.kind_of_encoder(enc).raw_onnx_inside]


def with_raw_inputs(
    model: Any, numeric: list[str], encoders: dict[str, Any], ids_names: dict[str, str]
) -> Any:
    """The core ONNX ``model`` (a ModelProto) with raw inputs in front (see the module):
    each column of :func:`inside_graph` gets the nodes its type writes
    (:meth:`ColumnType.raw_onnx`)."""
    import onnx
    from onnx import TensorProto, helper, version_converter

    inside = inside_graph(encoders)
    graph = model.graph
    replaced = ({"features"} if numeric else set()) | {ids_names[c] for c in inside}
    core_inputs = {i.name: i for i in graph.input}
    missing = replaced - set(core_inputs)
    if missing:
        raise ValueError(f"the core graph has no input {sorted(missing)[0]}")
    nodes, inputs, consts, needs = [], [], [], {}
    if numeric:
        for c in numeric:
            inputs.append(helper.make_tensor_value_info(c, TensorProto.FLOAT, ["N", 1]))
        nodes.append(
            helper.make_node(
                "Concat", list(numeric), ["features"], axis=1, name=PREFIX + "features"
            )
        )
    for c in inside:
        id_type = core_inputs[ids_names[c]].type.tensor_type.elem_type
        kind = registry.kind_of_encoder(encoders[c])
        more, init, need = kind.raw_onnx(encoders[c], c, ids_names[c], id_type)
        inputs.append(helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]))
        nodes += more
        consts += init
        for domain, version in need.items():
            needs[domain] = max(needs.get(domain, 0), version)
    if needs.get("", 0) > _opset(model):  # e.g. the string operators dates need (opset 20)
        model = version_converter.convert_version(model, needs[""])
        model.ir_version = max(model.ir_version, 9)
        graph = model.graph
    graph.initializer.extend(consts)
    kept = [i for i in graph.input if i.name not in replaced]
    del graph.input[:]
    graph.input.extend(inputs + kept)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    for domain, version in needs.items():
        if domain:
            ml = [o for o in model.opset_import if o.domain == domain]
            if ml:
                ml[0].version = max(ml[0].version, version)
            else:
                model.opset_import.append(helper.make_opsetid(domain, version))
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
