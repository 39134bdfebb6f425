"""Text columns: one tokeniser, written twice (TensorFlow ops and Python) to agree exactly.

Tokenisation needs no configuration for any language:

1. Each code point is folded through one table: NFKC compatibility forms
   (full-width Latin, half-width katakana), lowercase, accents stripped from
   Latin/Greek/Cyrillic letters, punctuation, spaces and control characters
   become a space; zero-width and variation selectors disappear.
2. Characters of scripts written without spaces (Han, kana, Thai, Lao, Khmer,
   Myanmar, ...) and symbols/emoji become tokens of their own; everything else
   splits on spaces into words. Mixed text needs nothing special.
3. The first ``max_tokens`` tokens plus the n-grams of consecutive tokens
   (words for English, characters for Chinese) are looked up in a vocabulary
   built from the training data; unknown n-grams share one out-of-vocabulary
   id (1) and 0 pads.

:class:`TextTokenizer` is the Keras layer doing this inside ``model.keras``
and SavedModel exports (raw strings in). :class:`PyTokenizer` is the same
function in Python ``str.translate``/``split``, used to train and to feed the
integer-id core that ``inference.onnx`` holds (onnxruntime runs no string
ops: tf2onnx reports success on ``StringSplitV2`` graphs it cannot load).
The fold table is stored with the model (a layer weight; the run folder's
``preprocessing/``), so a model reads text the same way under any Python's
Unicode tables. ``check_parity`` proves both paths give the same ids.

Example::

    spec = TextSpec(ngrams=2, max_tokens=512, max_chars=20000)
    tok = PyTokenizer(spec, build_vocabulary(["好 评", "差 评"], spec))
    tok.ids(["好评!"])       # int32 [1, L], 0-padded
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np


TABLE_SIZE = 0x30000  # BMP and the supplementary planes where CJK extensions and emoji live
ISOLATE = 1 << 22  # flag above every code point (max 0x10FFFF < 2**21)
DELETE = -1
SPACE = 0x20
PAD, OOV = 0, 1

# Scripts written without spaces between words: each character is a token.
_ISOLATE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x31A0, 0x31FF),  # Bopomofo ext., Katakana ext.
    (0x3400, 0x4DBF),  # CJK ext. A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FFFF),  # CJK ext. B-F, compatibility supplement
)
# Marks that only decorate the letter before them (accents): dropped.
_DIACRITIC_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
_INVISIBLE_RANGES = (
    (0xFE00, 0xFE0F),
    (0x200B, 0x200F),
    (0x2060, 0x206F),
)  # variation selectors, zero-width, bidi


def _in(cp: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _fold_one(cp: int) -> int:
    c = chr(cp)
    cat = unicodedata.category(c)
    if cat == "Cs" or cat == "Co":
        return cp
    if _in(cp, _INVISIBLE_RANGES) or cat == "Cf" or _in(cp, _DIACRITIC_RANGES):
        return DELETE
    if cat[0] in "ZP" or cat in ("Cc", "Sk") or c.isspace():
        return SPACE
    k = unicodedata.normalize("NFKC", c)
    base = k if len(k) == 1 else c
    stripped = "".join(
        x for x in unicodedata.normalize("NFKD", base) if not unicodedata.combining(x)
    )
    if len(stripped) == 1 and (ord(stripped) < 0x0530 or 0x1E00 <= ord(stripped) < 0x2000):
        base = stripped  # é -> e, ё -> е, ά -> α (not が -> か)
    low = base.lower()
    if len(low) == 1:
        base = low
    out = ord(base)
    bcat = unicodedata.category(base)
    if bcat[0] in "ZP" or bcat in ("Cc", "Sk") or base.isspace():
        return SPACE  # e.g. a full-width comma folded to ','
    if bcat[0] == "S" or _in(cp, _ISOLATE_RANGES) or _in(out, _ISOLATE_RANGES):
        return out | ISOLATE  # symbols, emoji and CJK characters are tokens alone
    return out


@functools.lru_cache(maxsize=1)
def fold_table() -> np.ndarray:
    """int32[TABLE_SIZE]: folded code point, ``| ISOLATE`` for lone tokens, -1 to delete."""
    return np.fromiter(
        (_fold_one(cp) for cp in range(TABLE_SIZE)), dtype=np.int32, count=TABLE_SIZE
    )


def table_diff(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code points, values) where the table is not the identity (what is stored)."""
    keys = np.flatnonzero(table != np.arange(len(table), dtype=np.int32)).astype(np.int32)
    return keys, table[keys]


def table_from_diff(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    t = np.arange(TABLE_SIZE, dtype=np.int32)
    t[np.asarray(keys, np.int64)] = values
    return t


@dataclass(frozen=True)
class TextSpec:
    """How a text column is cut into ids (``data.text`` in the config)."""

    ngrams: int = 2
    max_tokens: int = 2000
    max_chars: int = 20000
    # each n-gram once a row, in order of first sight (the TF-IDF bag's binary tf)
    unique: bool = False


def _translation(table: np.ndarray) -> dict[int, str | None]:
    keys, values = table_diff(table)
    out: dict[int, str | None] = {}
    for k, v in zip(keys.tolist(), values.tolist()):
        if v == DELETE:
            out[k] = None
        elif v & ISOLATE:
            out[k] = f" {chr(v & ~ISOLATE)} "
        else:
            out[k] = chr(v)
    return out


class PyTokenizer:
    """The tokeniser in plain Python; identical ids to :class:`TextTokenizer`."""

    kind = "ngrams"

    def __init__(
        self,
        spec: TextSpec,
        vocabulary: Sequence[str] = (),
        table: np.ndarray | None = None,
        idf: np.ndarray | None = None,
    ):
        self.spec = spec
        self.table = fold_table() if table is None else np.asarray(table, np.int32)
        self._trans = _translation(self.table)
        self.vocabulary = list(vocabulary)
        self.index = {t: i + 2 for i, t in enumerate(self.vocabulary)}
        self.chosen: list[str] = []  # data.text auto settings: what was chosen and why
        # float32 [len(vocabulary) + 2] for a TF-IDF bag (fitted on the training rows), else None
        self.idf = idf

    def tokens(self, text: Any) -> list[str]:
        if not isinstance(text, str):
            text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        return text[: self.spec.max_chars].translate(self._trans).split()[: self.spec.max_tokens]

    def grams(self, text: Any) -> list[str]:
        toks = self.tokens(text)
        out = list(toks)
        for n in range(2, self.spec.ngrams + 1):
            out += [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        return out

    def ids(self, texts: Iterable[Any], length: int | None = None) -> np.ndarray:
        """int32 [rows, L]: L = the longest row (at least 1), or ``length``."""
        get = self.index.get
        if self.spec.unique:  # each id once, first sight first: one pass a row (predict's loop)
            rows = [list(dict.fromkeys(get(g, OOV) for g in self.grams(t))) for t in texts]
        else:
            rows = [[get(g, OOV) for g in self.grams(t)] for t in texts]
        width = length if length is not None else max([1, *map(len, rows)])
        out = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            r = r[:width]
            out[i, : len(r)] = r
        return out

    @property
    def max_length(self) -> int:
        t = self.spec.max_tokens
        return sum(max(t - n + 1, 0) for n in range(1, self.spec.ngrams + 1))


def build_vocabulary(
    texts: Iterable[Any], spec: TextSpec, size: int = 100_000, min_count: int = 2
) -> list[str]:
    """The ``size`` most frequent n-grams seen at least ``min_count`` times (ties by text)."""
    return fit_vocabulary(texts, spec, size, min_count)[0]


def fit_vocabulary(
    texts: Iterable[Any], spec: TextSpec, size: int = 100_000, min_count: int = 2
) -> tuple[list[str], np.ndarray]:
    """(:func:`build_vocabulary`, idf float32 [len + 2]): each id's smoothed inverse
    document frequency on these rows, ``ln((1 + n) / (1 + df)) + 1`` as scikit-learn's
    ``TfidfVectorizer``. Padding weighs 0; the shared out-of-vocabulary id weighs as
    an n-gram seen in one row (what it stands for: n-grams too rare to keep)."""
    tok = PyTokenizer(spec)
    counts: Counter[str] = Counter()
    n = 0
    for t in texts:
        counts.update(set(tok.grams(t)))  # document frequency: one count per row
        n += 1
    return vocabulary_of(counts, n, size, min_count)


def vocabulary_of(
    counts: Counter, n: int, size: int = 100_000, min_count: int = 2
) -> tuple[list[str], np.ndarray]:
    """:func:`fit_vocabulary` from document frequencies already counted over ``n`` rows
    (a streamed table counts them block by block)."""
    kept = [(c, g) for g, c in counts.items() if c >= min_count]
    kept.sort(key=lambda cg: (-cg[0], cg[1]))
    kept = kept[:size]
    df = np.array([0, 1, *(c for c, _ in kept)], np.float64)
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[PAD] = 0.0
    return [g for _, g in kept], idf


# --------------------------------------------------------------- Keras layer


def _check_sizes(ngrams: int, max_tokens: int, max_chars: int) -> None:
    if ngrams < 1:
        raise ValueError(f"ngrams must be >= 1, got {ngrams}")
    if min(max_tokens, max_chars) < 1:
        raise ValueError(f"max_tokens and max_chars must be >= 1: {max_tokens}, {max_chars}")


def _register():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class TextTokenizer(keras.layers.Layer):
        """Raw strings [batch] -> int32 ids [batch, L] (0-padded), as :class:`PyTokenizer`.

        Example::

            layer = TextTokenizer(vocabulary=["好", "评", "好 评"], ngrams=2)
            layer(tf.constant(["好评"]))   # [[2, 3, 4]]
        """

        # a raw column in, ids out: the model around its core (builders.core_of)
        reads_raw_column = True

        def __init__(
            self,
            vocabulary: list[str],
            ngrams: int = 2,
            max_tokens: int = 2000,
            max_chars: int = 20000,
            unique: bool = False,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            _check_sizes(ngrams, max_tokens, max_chars)
            self.vocabulary, self.unique = list(vocabulary), bool(unique)
            self.ngrams, self.max_chars = int(ngrams), int(max_chars)
            self.max_tokens = int(max_tokens)
            self._table_init = fold_table()
            self.table = self.add_weight(
                name="fold_table",
                shape=(TABLE_SIZE,),
                dtype="int32",
                trainable=False,
                initializer=lambda shape, dtype=None: self._table_init,
            )
            import tensorflow as tf

            # Made here, eagerly: a table made while tracing would belong to that trace's graph.
            keys = tf.constant(self.vocabulary or [""], tf.string)
            vals = tf.range(2, 2 + len(self.vocabulary or [""]), dtype=tf.int64)
            self._lookup = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, vals), default_value=OOV
            )

        def call(self, inputs):
            import tensorflow as tf

            s = tf.reshape(tf.convert_to_tensor(inputs), [-1])
            cps = tf.strings.unicode_decode(s, "UTF-8", errors="replace")[:, : self.max_chars]
            flat = cps.flat_values
            table = tf.convert_to_tensor(self.table)
            t = tf.where(
                flat < TABLE_SIZE, tf.gather(table, tf.minimum(flat, TABLE_SIZE - 1)), flat
            )
            iso = tf.logical_and(t >= 0, tf.bitwise.bitwise_and(t, ISOLATE) > 0)
            ch = tf.where(iso, t - ISOLATE, t)
            sp = tf.where(iso, SPACE, DELETE)
            triples = tf.reshape(tf.stack([sp, ch, sp], axis=1), [-1])
            expanded = tf.RaggedTensor.from_row_splits(triples, cps.row_splits * 3)
            kept = tf.ragged.boolean_mask(expanded, expanded >= 0)
            folded = tf.strings.unicode_encode(kept, "UTF-8")
            toks = tf.strings.split(folded)[:, : self.max_tokens]
            grams = (
                tf.strings.ngrams(toks, ngram_width=list(range(1, self.ngrams + 1)), separator=" ")
                if self.ngrams > 1
                else toks
            )
            ids = grams.with_flat_values(tf.cast(self._lookup.lookup(grams.flat_values), tf.int32))
            if self.unique:  # each id once a row, first sight first: unique over (row, id) keys
                rows = ids.value_rowids()
                key, _ = tf.unique(rows * (1 << 32) + tf.cast(ids.flat_values, tf.int64))
                ids = tf.RaggedTensor.from_value_rowids(
                    tf.cast(key % (1 << 32), tf.int32), key // (1 << 32), nrows=ids.nrows()
                )
            dense = ids.to_tensor(default_value=PAD)
            pad = tf.maximum(
                1 - tf.shape(dense)[1], 0
            )  # at least one column, even for all-empty batches
            return tf.pad(dense, [[0, 0], [0, pad]])

        def compute_output_shape(self, input_shape):
            return (input_shape[0], None)

        def get_config(self):
            return {
                **super().get_config(),
                "vocabulary": self.vocabulary,
                "ngrams": self.ngrams,
                "max_tokens": self.max_tokens,
                "max_chars": self.max_chars,
                "unique": self.unique,
            }

    return TextTokenizer


def _register_mean():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class MaskedMean(keras.layers.Layer):
        """Mean of embeddings over the non-padding ids: [batch, L, D] + ids -> [batch, D]."""

        def call(self, embedded, ids):
            from keras import ops

            m = ops.cast(ops.not_equal(ids, PAD), embedded.dtype)[..., None]
            return ops.sum(embedded * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

        def compute_output_shape(self, embedded_shape, ids_shape=None):
            return (embedded_shape[0], embedded_shape[-1])

    return MaskedMean


def _register_bag():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class TfidfBag(keras.layers.Layer):
        """A TF-IDF weighted sum of embeddings: [batch, L, D] + ids -> [batch, D].

        Each row's ids come once each (the tokeniser's ``unique``: binary tf; in
        scikit-learn it scores within 0.3 points of sublinear tf, either way round,
        on every corpus of benchmarks/text_bench.py); each
        weighs its idf (a weight of the model, fitted on the training rows), and a
        row's weights are L2-normalised. With D = classes and nothing after it,
        this is a linear model on TF-IDF features; in ONNX it is Gather, Mul,
        ReduceSum and Sqrt.
        """

        def __init__(self, size: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.size = int(size)
            self.idf = self.add_weight(
                name="idf", shape=(self.size,), dtype="float32", trainable=False, initializer="ones"
            )

        def call(self, embedded, ids):
            from keras import ops

            w = ops.take(ops.cast(self.idf, embedded.dtype), ids, axis=0)
            w = w / ops.maximum(ops.sqrt(ops.sum(w * w, axis=1, keepdims=True)), 1e-6)
            return ops.sum(embedded * w[..., None], axis=1)

        def compute_output_shape(self, embedded_shape, ids_shape=None):
            return (embedded_shape[0], embedded_shape[-1])

        def get_config(self):
            return {**super().get_config(), "size": self.size}

    return TfidfBag


@functools.lru_cache(maxsize=1)
def layers():
    """(TextTokenizer, MaskedMean, TfidfBag), registered with Keras on first use."""
    return _register(), _register_mean(), _register_bag()


def keras_tokenizer(spec: TextSpec, vocabulary: list[str], name: str | None = None):
    TextTokenizer = layers()[0]
    return TextTokenizer(
        vocabulary=vocabulary,
        ngrams=spec.ngrams,
        max_tokens=spec.max_tokens,
        max_chars=spec.max_chars,
        unique=spec.unique,
        name=name,
    )


def trim_ids(name: str, ids: np.ndarray) -> np.ndarray:
    """An id matrix cut to its longest row (0 pads the end of each row)."""
    if (
        not name.startswith("ids_") or ids.size == 0 or ids.dtype.kind == "f"
    ):  # float: a date's fixed parts
        return ids
    width = max(1, int((ids != 0).sum(axis=1).max()))
    return ids[:, :width]


# ------------------------------------------------------- names and run files

PREPROCESSING_DIR = "preprocessing"
TEXT_FILE = "text.json"
TABLE_FILE = "fold_table.npz"


def safe_name(column: str) -> str:
    """A column name as a model input name (ASCII word characters: ONNX-safe)."""
    import re

    return re.sub(r"\W", "_", column, flags=re.ASCII) or "_"


def ids_name(column: str) -> str:
    """The core model's input holding a text or category column's ids."""
    return "ids_" + safe_name(column)


def raw_input_name(column: str) -> str:
    """The input of the model users get (``model.keras``) holding a column's raw strings."""
    name = safe_name(column)
    return name if name not in ("features",) and not name.startswith("ids_") else f"text_{name}"


def spec_of(cfg_text: Any, chosen: dict[str, Any] | None = None) -> TextSpec:
    """The column's spec from ``data.text``; its ``auto`` settings come from
    ``chosen`` (:func:`choose` on the training rows)."""
    ngrams, max_tokens = cfg_text.ngrams, cfg_text.max_tokens
    if "auto" in (ngrams, max_tokens):
        chosen = chosen if chosen is not None else choose([], cfg_text.max_chars)
        ngrams = chosen["ngrams"] if ngrams == "auto" else ngrams
        max_tokens = chosen["max_tokens"] if max_tokens == "auto" else max_tokens
    return TextSpec(
        ngrams=ngrams,
        max_tokens=max_tokens,
        max_chars=cfg_text.max_chars,
        unique=cfg_text.weighting == "tfidf",
    )


AUTO_MAX_TOKENS = 2000  # the cap of max_tokens: auto (and the schema default)
SAMPLE_ROWS = 5000


def choose(texts: Sequence[Any], max_chars: int = 20000) -> dict[str, Any]:
    """``data.text``'s ``auto`` settings from the training texts (the first
    ``SAMPLE_ROWS``), with why: ``{"ngrams", "max_tokens", "script", "why": [lines]}``.

    - n-grams 1-2 of what the script is made of: characters and character pairs
      when 80% of the tokens or more are characters of scripts written without spaces (Chinese,
      Japanese, Thai: a word there is mostly 1-2 characters), words and word pairs
      when 20% or less are (on the benchmark's English corpora, scikit-learn's TF-IDF models
      score higher with word pairs than without on 3 of 4), both in between (the
      tokeniser does both in mixed text: the choice is only said);
    - max_tokens: the texts' 99th percentile of tokens (a multiple of 64, at least
      64, at most 2,000), so short texts are not padded to 2,000 ids a row and
      long ones are read to their end but for the longest 1%.
    """
    sample = (
        list(texts[:SAMPLE_ROWS])
        if not isinstance(texts, np.ndarray)
        else texts[:SAMPLE_ROWS].tolist()
    )
    tok = PyTokenizer(TextSpec(ngrams=1, max_tokens=10**9, max_chars=max_chars))
    lengths, chars, total = [], 0, 0
    for t in sample:
        toks = tok.tokens(t)
        lengths.append(len(toks))
        total += len(toks)
        chars += sum(
            1 for w in toks if len(w) == 1 and _in(ord(w), _ISOLATE_RANGES)
        )  # not symbols or emoji, tokens alone too
    share = chars / total if total else 0.0
    script = "characters" if share >= 0.8 else "words" if share <= 0.2 else "mixed"
    p99 = float(np.percentile(lengths, 99)) if lengths else 0.0
    max_tokens = int(min(AUTO_MAX_TOKENS, max(64, -(-int(np.ceil(p99)) // 64) * 64)))
    median = float(np.median(lengths)) if lengths else 0.0
    so = {
        "characters": " (Chinese, Japanese, Thai...), so characters and character pairs",
        "words": ", so words and word pairs",
        "mixed": ": characters and character pairs there, words and word pairs elsewhere",
    }[script]
    why = [
        f"n-grams 1-2 of {script if script != 'mixed' else 'words and characters'}: "
        f"{share:.0%} of the tokens are characters of a script written without spaces{so}",
        f"max_tokens {max_tokens:,}: the texts hold {median:,.0f} tokens at the median and "
        f"{p99:,.0f} at the 99th percentile"
        + (f" (cut at {AUTO_MAX_TOKENS:,})" if p99 > AUTO_MAX_TOKENS else ""),
    ]
    return {"ngrams": 2, "max_tokens": max_tokens, "script": script, "why": why}
