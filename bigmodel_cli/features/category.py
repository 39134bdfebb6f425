"""Category columns: a value -> id lookup written twice (TensorFlow ops and Python) to agree.

A cell is first made canonical, the same way from a pandas value at training
time and from the raw CSV text at prediction time:

- surrounding spaces are dropped; an empty cell or a common missing-value
  spelling (``NA``, ``N/A``, ``null``, ``NaN``, ``None``, ...) is *missing*;
- an integer however written (``7``, ``07``, ``+7``, ``7.0``) is ``7``;
- in a boolean column every common spelling (``true/false``, ``yes/no``,
  ``y/n``, ``t/f``, ``1/0``, ``on/off``, any case) is ``true`` or ``false``.

Then id 0 is *missing*, id 1 any value never seen in training (so a new value
is predicted, not refused), and 2.. the training values, most frequent first.

:class:`CategoryEncoder` does this in Python (training, and predict's ONNX
path, which runs no string ops); :func:`keras_lookup` is the Keras layer
doing it inside ``model.keras``.

Example::

    enc = CategoryEncoder.fit(["Biscoe", "Dream", "Biscoe", None])
    enc.ids(["Dream", "Torgersen", ""])   # [[3], [1], [0]]
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from bigmodel_cli.features.base import ColumnType

MISSING, UNSEEN = 0, 1
# pandas' default NA spellings (read_csv), so training and prediction agree on them.
NA_SPELLINGS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
TRUE_SPELLINGS = ("true", "t", "yes", "y", "1", "on")
FALSE_SPELLINGS = ("false", "f", "no", "n", "0", "off")
_INT = re.compile(r"[+-]?[0-9]+(\.0*)?")


def canonical(value: Any, boolean: bool = False) -> str | None:
    """The key of one cell; None for missing."""
    if value is None or value is np.nan:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer() and abs(value) < 2**53:
            value = int(value)
    if isinstance(value, (int, np.integer)):
        s = str(int(value))
    else:
        s = str(value).strip()
    if s in NA_SPELLINGS:
        return None
    if boolean:
        low = s.lower()
        if low in TRUE_SPELLINGS:
            return "true"
        if low in FALSE_SPELLINGS:
            return "false"
    if _INT.fullmatch(s):
        s = re.sub(r"\.0*$", "", s)
        s = re.sub(r"^\+", "", s)
        s = re.sub(r"^(-?)0+([0-9])", r"\1\2", s)
        if s == "-0":
            s = "0"
    return s


def is_boolean(values: Iterable[Any]) -> bool:
    """Every present value is a boolean spelling, and both sides are not ambiguous numbers only."""
    seen = set()
    for v in values:
        k = canonical(v)
        if k is None:
            continue
        low = k.lower()
        if low not in TRUE_SPELLINGS and low not in FALSE_SPELLINGS:
            return False
        seen.add(low)
    return bool(seen) and not seen <= {"1", "0"}  # a 0/1 column is a number


class CategoryEncoder:
    """Python side of a category column: canonical keys -> ids [rows, 1]."""

    kind = "category"

    def __init__(
        self,
        vocabulary: Sequence[str],
        boolean: bool = False,
        spellings: dict[str, str] | None = None,
    ):
        self.vocabulary = list(vocabulary)
        self.boolean = bool(boolean)
        self.index = {v: i + 2 for i, v in enumerate(self.vocabulary)}
        self.spellings = dict(
            spellings or {}
        )  # a boolean column: key -> its commonest spelling in training

    @classmethod
    def fit(
        cls,
        values: Iterable[Any],
        max_values: int = 10_000,
        min_count: int = 1,
        boolean: bool | None = None,
    ) -> "CategoryEncoder":
        values = list(values)
        boolean = is_boolean(values) if boolean is None else boolean
        keys = [canonical(v, boolean) for v in values]
        enc = cls.from_counts(
            Counter(k for k in keys if k is not None), max_values, min_count, boolean
        )
        if boolean:  # shown as the training file wrote them (yes/no), not as the keys (true/false)
            seen = Counter(
                (k, str(v).strip()) for k, v in zip(keys, values, strict=True) if k is not None
            )
            for (k, text), _ in sorted(seen.items(), key=lambda kv: -kv[1]):
                enc.spellings.setdefault(k, text)
        return enc

    def shown(self) -> list[str]:
        """The kept values as the training file wrote them, commonest first."""
        return [self.spellings.get(v, v) for v in self.vocabulary]

    @classmethod
    def from_counts(
        cls,
        counts: "Counter[str]",
        max_values: int = 10_000,
        min_count: int = 1,
        boolean: bool = False,
    ) -> "CategoryEncoder":
        """The most frequent keys (ties by key), from counts of canonical keys."""
        kept = sorted(
            ((c, k) for k, c in counts.items() if c >= min_count), key=lambda ck: (-ck[0], ck[1])
        )
        return cls([k for _, k in kept[:max_values]], boolean)

    def ids(self, values: Iterable[Any], length: int | None = None) -> np.ndarray:
        get = self.index.get
        out = [
            MISSING if (k := canonical(v, self.boolean)) is None else get(k, UNSEEN) for v in values
        ]
        return np.asarray(out, np.int32).reshape(-1, 1)

    @property
    def size(self) -> int:
        """Ids in use: missing, unseen and the values."""
        return len(self.vocabulary) + 2


@functools.lru_cache(maxsize=1)
def layers():
    """(CategoryLookup, OneHot): Keras layers, registered on first use."""
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class CategoryLookup(keras.layers.Layer):
        """Raw strings [batch] -> ids [batch, 1], as :class:`CategoryEncoder`."""

        # a raw column in, ids out: the model around its core (builders.core_of)
        reads_raw_column = True

        def __init__(self, vocabulary: list[str], boolean: bool = False, **kwargs: Any):
            super().__init__(**kwargs)
            import tensorflow as tf

            self.vocabulary, self.boolean = list(vocabulary), bool(boolean)
            keys = tf.constant(self.vocabulary or ["\x00unused"], tf.string)
            self._table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    keys, tf.range(2, 2 + keys.shape[0], dtype=tf.int64)
                ),
                default_value=UNSEEN,
            )
            na = tf.constant(list(NA_SPELLINGS), tf.string)
            self._na = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(na, tf.ones_like(na, tf.int64)), default_value=0
            )
            spell = list(TRUE_SPELLINGS) + list(FALSE_SPELLINGS)
            truth = ["true"] * len(TRUE_SPELLINGS) + ["false"] * len(FALSE_SPELLINGS)
            self._bool = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(spell), tf.constant(truth)),
                default_value="",
            )

        def call(self, inputs):
            import tensorflow as tf

            s = tf.strings.strip(tf.reshape(tf.convert_to_tensor(inputs), [-1]))
            missing = self._na.lookup(s) > 0
            if self.boolean:
                b = self._bool.lookup(tf.strings.lower(s))
                s = tf.where(tf.strings.length(b) > 0, b, s)
            is_int = tf.strings.regex_full_match(s, r"[+-]?[0-9]+(\.0*)?")
            t = tf.strings.regex_replace(s, r"\.0*$", "")
            t = tf.strings.regex_replace(t, r"^\+", "")
            t = tf.strings.regex_replace(t, r"^(-?)0+([0-9])", r"\1\2")
            t = tf.where(tf.equal(t, "-0"), "0", t)
            key = tf.where(is_int, t, s)
            ids = tf.where(missing, tf.constant(MISSING, tf.int64), self._table.lookup(key))
            return tf.reshape(tf.cast(ids, tf.int32), [-1, 1])

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 1)

        def get_config(self):
            return {**super().get_config(), "vocabulary": self.vocabulary, "boolean": self.boolean}

    @keras.saving.register_keras_serializable(package="bigmodel")
    class OneHot(keras.layers.Layer):
        """ids [batch, 1] -> one-hot [batch, size] (ONNX-friendly)."""

        def __init__(self, size: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.size = int(size)

        def call(self, ids):
            from keras import ops

            return ops.one_hot(ops.reshape(ids, (-1,)), self.size, dtype=self.compute_dtype)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.size)

        def get_config(self):
            return {**super().get_config(), "size": self.size}

    return CategoryLookup, OneHot


def embedding_size(n_ids: int) -> int:
    """A learned vector's size for a column with ``n_ids`` ids (fast.ai's rule, capped)."""
    return int(min(32, max(2, round(1.6 * n_ids**0.56))))


def category_keys(enc: CategoryEncoder) -> dict[str, int]:
    """Every string an ONNX lookup maps to an id other than 'unseen' (after
    lower-casing, for a yes/no column): what :meth:`CategoryEncoder.ids` gives."""
    keys: dict[str, int] = {}
    for i, v in enumerate(enc.vocabulary):
        keys[v] = i + 2
        if v.lstrip("-").isdigit():
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


class CategoryType(ColumnType):
    """A category column: ids of its most frequent values (:class:`CategoryEncoder`);
    inside the model one-hot for few values, else a learned vector."""

    name = "category"
    spellings = ("category",)
    saved_as = ("category",)
    describe = "ids of its most frequent values; one-hot or a learned vector"
    raw_onnx_inside = True

    def fit(self, values: Sequence[Any], column: str, spelling: str, cfg: Any) -> Any:
        return CategoryEncoder.fit(values, max_values=cfg.data.max_categories)

    def to_doc(self, encoder: Any, input_name: str) -> dict[str, Any]:
        return {
            "kind": "category",
            "input": input_name,
            "boolean": encoder.boolean,
            "vocabulary": encoder.vocabulary,
            "spellings": encoder.spellings,
        }

    def from_doc(self, doc: dict[str, Any], fold_table: Any) -> Any:
        return CategoryEncoder(doc["vocabulary"], doc["boolean"], doc.get("spellings"))

    def core_input(self, encoder: Any, name: str, cfg: Any, context: dict[str, Any]):
        import keras
        from keras import layers as L

        # One id a row: a fixed width of 1, so the embedding's flattened width is known
        # (shape (None,) left Dense's kernel shape undefined past data.one_hot_max ids).
        ids = keras.Input(shape=(1,), name=name, dtype="int32")
        if encoder.size <= cfg.data.one_hot_max:
            return ids, layers()[1](encoder.size, name=f"onehot_{name[4:]}")(ids)
        emb = L.Embedding(encoder.size, embedding_size(encoder.size), name=f"embed_{name[4:]}")(ids)
        return ids, L.Flatten(name=f"flat_{name[4:]}")(emb)

    def raw_layer(self, encoder: Any, name: str):
        return layers()[0](encoder.vocabulary, encoder.boolean, name=f"lookup_{name}")

    def raw_onnx(self, encoder: Any, column: str, output: str, id_type: int):
        from onnx import helper

        keys = category_keys(encoder)
        p = "bigmodel_raw/" + column
        nodes = [
            helper.make_node(
                "LabelEncoder",
                [column],
                [p + "/ids64"],
                domain="ai.onnx.ml",
                keys_strings=list(keys),
                values_int64s=list(keys.values()),
                default_int64=UNSEEN,
                name=p + "/lookup",
            ),
            helper.make_node("Cast", [p + "/ids64"], [output], to=id_type, name=p + "/cast"),
        ]
        return nodes, [], {"ai.onnx.ml": 2}


CATEGORY = CategoryType()
