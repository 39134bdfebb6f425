"""One column-type registry: spelling -> type class, after Ludwig's ``feature_registries.py``.

Every feature column has a type: ``number``, ``category``, ``text`` or ``date``
(``data.columns`` may spell a date ``date_iso``, ``date_dmy`` or ``date_mdy``).
Each type is one class (:class:`~bigmodel_cli.features.base.ColumnType`) in its
own module, owning what a column of that type does: fit, check, encode, save and
load, its Keras input and in-model layer, its raw ONNX graph. This module is the
only map from a spelling (or a saved encoder) to that class; code that needs to
know what a type means asks it instead of comparing strings:

- :func:`kind` maps a spelling (``None`` is a number) to its type;
- :func:`columns_of` lists the features of one type;
- ``ColumnType.encoded``: the column reaches the model through its own encoder
  (ids or date parts: an ``ids_<col>`` input) rather than as a float;
- :func:`kind_of_encoder`: the type of a fitted encoder;
- :func:`encoder_doc` / :func:`encoder_from_doc`: the encoder's entry in a run's
  ``preprocessing/text.json`` and back, and :func:`save_tokenizers` /
  :func:`load_tokenizers` for a run's every encoder (no TensorFlow needed).

Two more types have a class but no ``data.columns`` spelling, since no table
holds them as a column: images (``IMAGE``, :mod:`bigmodel_cli.features.image`:
files decoded to pixels, from a folder or a list of files) and the target
(:class:`bigmodel_cli.features.target.Target`). Id columns (``data.id_columns``)
have none: nothing is fitted, checked or fed to the model, they are copied to
the output as read.

A new type is one :class:`ColumnType` subclass in a module of its own, listed in
``KINDS`` here, and its spelling in ``config.ColumnType``.

Example::

    kind("date_dmy") is DATE          # True
    columns_of({"a": "text"}, ["a", "b"], NUMBER)   # ['b']
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from bigmodel_cli.features.base import ColumnType
from bigmodel_cli.features.category import CATEGORY
from bigmodel_cli.features.date import DATE
from bigmodel_cli.features.number import NUMBER
from bigmodel_cli.features.text_type import TEXT

ColumnKind = ColumnType  # the name earlier code used
NUMBER_NAME = NUMBER.name
KINDS: tuple[ColumnType, ...] = (NUMBER, CATEGORY, TEXT, DATE)  # a table's columns
_BY_SPELLING = {s: k for k in KINDS for s in k.spellings}
_BY_SAVED = {s: k for k in KINDS for s in k.saved_as}


def kind(spelling: str | None) -> ColumnType:
    """The type a column type spelling means; an untyped column is a number."""
    if spelling is None:
        return NUMBER
    try:
        return _BY_SPELLING[spelling]
    except KeyError:
        raise ValueError(
            f"unknown column type '{spelling}' (known: {', '.join(_BY_SPELLING)})"
        ) from None


def encoded(spelling: str | None) -> bool:
    """Whether a column of this type reaches the model through its own encoder."""
    return kind(spelling).encoded


def columns_of(
    types: dict[str, str] | None, features: Iterable[str], *kinds: ColumnType
) -> list[str]:
    """The features (in order) whose type is one of ``kinds``."""
    types = types or {}
    return [c for c in features if kind(types.get(c)) in kinds]


def encoded_columns(types: dict[str, str] | None, features: Iterable[str]) -> list[str]:
    """The features with their own encoder (categories, texts, dates)."""
    types = types or {}
    return [c for c in features if encoded(types.get(c))]


def kind_of_encoder(encoder: Any) -> ColumnType:
    """The type of a fitted encoder (by its ``kind``: category, date, ngrams, wordpiece)."""
    found = _BY_SAVED.get(getattr(encoder, "kind", None) or "")
    if found is None:
        raise TypeError(f"{type(encoder).__name__} is the encoder of no column type")
    return found


def encoder_doc(encoder: Any, input_name: str) -> dict[str, Any]:
    """A fitted encoder's entry in ``preprocessing/text.json``."""
    return kind_of_encoder(encoder).to_doc(encoder, input_name)


def encoder_from_doc(doc: dict[str, Any], fold_table: Any) -> Any:
    """The encoder :func:`encoder_doc` described (``fold_table``: the n-gram tokeniser's)."""
    return _BY_SAVED[doc.get("kind") or "ngrams"].from_doc(doc, fold_table)


def save_tokenizers(folder, tokenizers: dict[str, Any]) -> list:
    """Write each column's vocabulary and the fold table into ``folder``
    (a run's ``preprocessing/``); returns the paths written."""
    import io
    import json
    from pathlib import Path

    from bigmodel_cli.features.text import (
        TABLE_FILE,
        TEXT_FILE,
        PyTokenizer,
        fold_table,
        ids_name,
        table_diff,
    )
    from bigmodel_cli.runs import atomic_path, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": 1,
        "columns": {col: encoder_doc(tok, ids_name(col)) for col, tok in tokenizers.items()},
    }
    atomic_write_text(folder / TEXT_FILE, json.dumps(doc, ensure_ascii=False))
    table = next((t.table for t in tokenizers.values() if isinstance(t, PyTokenizer)), None)
    if table is None and any(TEXT.owns(t) for t in tokenizers.values()):
        table = fold_table()  # a pretrained encoder's columns: the shipped fold table
    # categories and dates alone fold nothing: the identity, stored as no difference (the
    # full table costs a second to build, every run that has one of them paid it)
    keys, values = table_diff(table) if table is not None else (np.zeros(0, np.int32),) * 2
    buf = io.BytesIO()
    idf = {
        f"idf_{ids_name(col)}": t.idf
        for col, t in tokenizers.items()
        if getattr(t, "idf", None) is not None
    }  # TF-IDF bags' weights
    np.savez_compressed(buf, keys=keys, values=values, **idf)
    with atomic_path(folder / TABLE_FILE) as tmp:
        tmp.write_bytes(buf.getvalue())
    return [folder / TEXT_FILE, folder / TABLE_FILE]


def load_tokenizers(folder) -> dict[str, Any]:
    """The tokenisers :func:`save_tokenizers` wrote (no TensorFlow needed)."""
    import json
    from pathlib import Path

    from bigmodel_cli.errors import ModelFileError
    from bigmodel_cli.features.text import TABLE_FILE, TEXT_FILE, table_from_diff

    folder = Path(folder)
    try:
        doc = json.loads((folder / TEXT_FILE).read_text(encoding="utf-8"))
        with np.load(folder / TABLE_FILE, allow_pickle=False) as z:
            table = table_from_diff(z["keys"], z["values"])
            idf = {k[4:]: z[k] for k in z.files if k.startswith("idf_")}
    except (OSError, ValueError, KeyError) as e:
        raise ModelFileError(
            f"{folder}: the text vocabulary is missing or unreadable ({type(e).__name__})",
            hint="retrain the run; predict --engine tensorflow reads the vocabulary inside "
            "model.keras",
        ) from None
    out: dict[str, Any] = {col: encoder_from_doc(c, table) for col, c in doc["columns"].items()}
    for col, c in doc["columns"].items():
        if c.get("input") in idf:
            out[col].idf = idf[c["input"]]
    return out
