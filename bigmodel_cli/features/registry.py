"""One column-type registry: type -> fit / save / load, after Ludwig's ``features/`` registry.

Every feature column has a type: ``number``, ``category``, ``text`` or ``date``
(``data.columns`` may spell a date ``date_iso``, ``date_dmy`` or ``date_mdy``).
Code that needs to know what a type means asks this module instead of
comparing strings:

- :func:`kind` maps a spelling (``None`` is a number) to its :class:`ColumnKind`;
- :func:`columns_of` lists the features of one kind;
- ``ColumnKind.encoded``: the column reaches the model through its own encoder
  (ids or date parts: an ``ids_<col>`` input) rather than as a float;
- ``ColumnKind.fit`` builds the encoder from the training rows;
- :func:`encoder_doc` / :func:`encoder_from_doc`: the encoder's entry in a
  run's ``preprocessing/text.json`` and back, and :func:`save_tokenizers` /
  :func:`load_tokenizers` for a run's every encoder (no TensorFlow needed);
- :func:`kind_of_encoder`: which kind a fitted encoder belongs to.

A new type is one :class:`ColumnKind` here, its spelling in ``config.ColumnType``
and its encoder module beside this one.

Example::

    kind("date_dmy") is DATE          # True
    columns_of({"a": "text"}, ["a", "b"], NUMBER)   # ['b']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

NUMBER_NAME = "number"


@dataclass(frozen=True)
class ColumnKind:
    name: str  # number | category | text | date
    spellings: tuple[str, ...]  # what data.columns may say
    encoded: bool  # its own encoder and an ids_<col> input, not a float column
    saved_as: tuple[str, ...]  # the "kind" of its encoder in preprocessing/text.json
    fit: Callable[..., Any] | None = None  # (values, column, spelling, cfg) -> encoder
    describe: str = ""

    def __repr__(self) -> str:
        return f"ColumnKind({self.name})"


def _fit_category(values: Any, column: str, spelling: str, cfg: Any) -> Any:
    from bigmodel_cli.features.category import CategoryEncoder

    return CategoryEncoder.fit(values, max_values=cfg.data.max_categories)


def _fit_date(values: Any, column: str, spelling: str, cfg: Any) -> Any:
    from bigmodel_cli.features.date import DateEncoder

    return DateEncoder.fit(values, spelling, column)


def _fit_text(texts: Any, column: str, spelling: str, cfg: Any) -> Any:
    """An n-gram vocabulary from the training texts (None when no n-gram is frequent enough)."""
    from bigmodel_cli.features.text import PyTokenizer, choose, fit_vocabulary, spec_of

    t = cfg.data.text
    chosen = choose(texts, t.max_chars) if "auto" in (t.ngrams, t.max_tokens) else None
    spec = spec_of(t, chosen)
    vocab, idf = fit_vocabulary(texts, spec, t.vocabulary_size, t.min_count)
    if not vocab:
        return None
    tok = PyTokenizer(spec, vocab, idf=idf if spec.unique else None)
    if chosen is not None:  # what the run chose, and why (train prints it)
        tok.chosen = [f"text column '{column}': {line}" for line in chosen["why"]] + [
            f"text column '{column}': vocabulary of {len(vocab):,} n-grams seen in {t.min_count}+ training rows"
            + (
                f" (the {t.vocabulary_size:,} most frequent)"
                if len(vocab) >= t.vocabulary_size
                else ""
            )
        ]
    return tok


NUMBER = ColumnKind(
    NUMBER_NAME,
    (NUMBER_NAME,),
    False,
    (),
    None,
    "a float column: imputed, standardised or binned inside the model",
)
CATEGORY = ColumnKind(
    "category",
    ("category",),
    True,
    ("category",),
    _fit_category,
    "ids of its most frequent values; one-hot or a learned vector",
)
TEXT = ColumnKind(
    "text",
    ("text",),
    True,
    ("ngrams", "wordpiece"),
    _fit_text,
    "n-gram ids (from scratch) or a pretrained encoder's WordPiece ids",
)
DATE = ColumnKind(
    "date",
    ("date", "date_iso", "date_dmy", "date_mdy"),
    True,
    ("date",),
    _fit_date,
    "year, days since 1970 and cyclic month/weekday/day-of-year parts",
)
KINDS: tuple[ColumnKind, ...] = (NUMBER, CATEGORY, TEXT, DATE)
_BY_SPELLING = {s: k for k in KINDS for s in k.spellings}
_BY_SAVED = {s: k for k in KINDS for s in k.saved_as}


def kind(spelling: str | None) -> ColumnKind:
    """The kind a column type spelling means; an untyped column is a number."""
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
    types: dict[str, str] | None, features: Iterable[str], *kinds: ColumnKind
) -> list[str]:
    """The features (in order) whose type is one of ``kinds``."""
    types = types or {}
    return [c for c in features if kind(types.get(c)) in kinds]


def encoded_columns(types: dict[str, str] | None, features: Iterable[str]) -> list[str]:
    """The features with their own encoder (categories, texts, dates)."""
    types = types or {}
    return [c for c in features if encoded(types.get(c))]


def kind_of_encoder(encoder: Any) -> ColumnKind:
    """The kind of a fitted encoder: its ``kind`` attribute, or text (the n-gram and WordPiece tokenisers)."""
    return _BY_SAVED.get(getattr(encoder, "kind", None) or "", TEXT)


def encoder_doc(encoder: Any, input_name: str) -> dict[str, Any]:
    """A fitted encoder's entry in ``preprocessing/text.json``."""
    from bigmodel_cli.features.text import PyTokenizer

    k = kind_of_encoder(encoder)
    if k is CATEGORY:
        return {
            "kind": "category",
            "input": input_name,
            "boolean": encoder.boolean,
            "vocabulary": encoder.vocabulary,
            "spellings": encoder.spellings,
        }
    if k is DATE:
        return {**encoder.to_json(), "input": input_name}
    if isinstance(encoder, PyTokenizer):
        s = encoder.spec
        return {
            "kind": "ngrams",
            "input": input_name,
            "ngrams": s.ngrams,
            "max_tokens": s.max_tokens,
            "max_chars": s.max_chars,
            "unique": s.unique,
            "vocabulary": encoder.vocabulary,
        }
    # wordpiece.WordPiece: a pretrained encoder's vocabulary
    return {
        "kind": "wordpiece",
        "input": input_name,
        "sequence_length": encoder.sequence_length,
        "lowercase": encoder.lowercase,
        "strip_accents": encoder.strip_accents,
        "vocabulary": encoder.vocabulary,
    }


def encoder_from_doc(doc: dict[str, Any], fold_table: Any) -> Any:
    """The encoder :func:`encoder_doc` described (``fold_table``: the n-gram tokeniser's)."""
    saved = doc.get("kind") or "ngrams"
    if saved == "category":
        from bigmodel_cli.features.category import CategoryEncoder

        return CategoryEncoder(doc["vocabulary"], doc["boolean"], doc.get("spellings"))
    if saved == "date":
        from bigmodel_cli.features.date import DateEncoder

        return DateEncoder(doc["format"], doc["stats"])
    if saved == "wordpiece":
        from bigmodel_cli.features.wordpiece import WordPiece

        return WordPiece(
            doc["vocabulary"], doc["sequence_length"], doc["lowercase"], doc["strip_accents"]
        )
    from bigmodel_cli.features.text import PyTokenizer, TextSpec

    return PyTokenizer(
        TextSpec(
            doc["ngrams"], doc["max_tokens"], doc["max_chars"], bool(doc.get("unique", False))
        ),
        doc["vocabulary"],
        fold_table,
    )


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
    table = next((t.table for t in tokenizers.values() if isinstance(t, PyTokenizer)), fold_table())
    keys, values = table_diff(table)
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
            hint="retrain the run; predict --engine tensorflow reads the vocabulary inside model.keras",
        ) from None
    out: dict[str, Any] = {col: encoder_from_doc(c, table) for col, c in doc["columns"].items()}
    for col, c in doc["columns"].items():
        if c.get("input") in idf:
            out[col].idf = idf[c["input"]]
    return out
