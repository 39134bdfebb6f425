"""The shape of a column type (issue 37, item 1): one class per type owns every
step a column of that type goes through, after Ludwig's ``features/`` classes.

A type is a stateless singleton (``NUMBER``, ``CATEGORY``, ``TEXT``, ``DATE``,
built in each type's own module); what it learns from the training rows is its
*encoder* (``CategoryEncoder``, ``DateEncoder``, ``PyTokenizer``/``WordPiece``),
the run's state for that column. The type's methods:

- :meth:`ColumnType.fit`: the encoder, from the training rows;
- :meth:`ColumnType.check`: raw cells -> (parsed cells, a mask of the *bad* ones:
  present but not of the type, as ``forty`` in a number column). What a bad
  value is called comes from :meth:`ColumnType.not_a` alone, so it is the same
  error in every command (:mod:`bigmodel_cli.features.road` raises it);
- :meth:`ColumnType.encode`: parsed cells -> the core model's input for the column;
- :meth:`ColumnType.to_doc` / :meth:`ColumnType.from_doc`: the encoder's entry in
  a run's ``preprocessing/text.json`` and back;
- :meth:`ColumnType.core_input`: the core model's Keras input and the layer after it;
- :meth:`ColumnType.raw_layer`: the in-model layer from the raw strings to that input;
- :meth:`ColumnType.raw_onnx`: the ONNX nodes that do the same inside a raw-column
  export, or None where the step stays outside the graph (a tokeniser).

The registry (:mod:`bigmodel_cli.features.registry`) is the only map from a
type's spelling to its class. Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class ColumnType:
    """A column type; subclasses override what their type does differently."""

    name: str = ""
    spellings: tuple[str, ...] = ()  # what data.columns may say
    encoded: bool = True  # its own encoder and an ids_<col> input, not a float column
    saved_as: tuple[str, ...] = ()  # the "kind" of its encoder in preprocessing/text.json
    describe: str = ""
    raw_onnx_inside: bool = False  # a raw-column ONNX export does this step in its graph

    def __repr__(self) -> str:
        return f"ColumnKind({self.name})"

    # --------------------------------------------------------------- reading
    def check(self, cells: Sequence[Any], spelling: str) -> tuple[Any, np.ndarray | None]:
        """(the parsed cells, the bad ones' mask or None where no value can be bad)."""
        return cells, None

    def not_a(self, spelling: str) -> str:
        """What a bad value of this type is not, for the error: 'a number'."""
        return f"a {self.name}"

    # -------------------------------------------------------------- fitting
    def fit(self, values: Sequence[Any], column: str, spelling: str, cfg: Any) -> Any:
        """The encoder fitted on the training rows (None: nothing to learn)."""
        return None

    def resolved(self, encoder: Any, spelling: str) -> str:
        """The spelling the run's config keeps once fitted (a date: the format it read)."""
        return spelling

    def owns(self, encoder: Any) -> bool:
        """Whether a fitted encoder is of this type."""
        return getattr(encoder, "kind", None) in self.saved_as

    def encode(self, encoder: Any, parsed: Any) -> np.ndarray:
        """The core model's input for parsed cells (:meth:`check`'s first value)."""
        return encoder.ids(parsed)

    # ------------------------------------------------------------ run folder
    def to_doc(self, encoder: Any, input_name: str) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} columns keep no encoder")

    def from_doc(self, doc: dict[str, Any], fold_table: Any) -> Any:
        raise NotImplementedError(f"{self.name} columns keep no encoder")

    # ---------------------------------------------------------------- model
    def core_input(self, encoder: Any, name: str, cfg: Any, context: dict[str, Any]):
        """(the core model's Keras input named ``name``, the tensor the model goes on from).
        ``context`` is shared by a model's columns (a pretrained encoder loads once)."""
        raise NotImplementedError(f"{self.name} columns have no input of their own")

    def raw_layer(self, encoder: Any, name: str):
        """The Keras layer from a raw string column to :meth:`core_input`'s input."""
        raise NotImplementedError(f"{self.name} columns have no raw layer")

    def raw_onnx(self, encoder: Any, column: str, output: str, id_type: int):
        """(nodes, initializers, opset needs) that map the raw string input ``column``
        to ``output`` inside an ONNX graph; None where this step stays outside it."""
        return None
