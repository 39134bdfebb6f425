"""The text column type: how a text column is fitted (the vocabulary, n-grams and length chosen
from the training texts), saved and read back, and what it puts into the model (ids and the
bag or mean layer) and into a raw-string export.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from bigmodel_cli.errors import DataError
from bigmodel_cli.features.base import ColumnType
from bigmodel_cli.features.text import (
    SAMPLE_ROWS,
    PyTokenizer,
    TextSpec,
    choose,
    keras_tokenizer,
    layers,
    spec_of,
    vocabulary_of,
)


class TextFitter:
    """:meth:`TextType.fit` over texts that come block by block (a streamed table's
    conversion): the settings ``auto`` chooses from the first ``SAMPLE_ROWS`` training
    texts, then each n-gram's document frequency over all of them; one call with every
    text is the in-memory fit, so both give the same tokeniser. :meth:`measure` takes
    every row (validation included): the most ids a row can have, a streamed block's width."""

    def __init__(self, column: str, cfg: Any):
        self.column, self.t = column, cfg.data.text
        auto = "auto" in (self.t.ngrams, self.t.max_tokens)
        self.spec = None if auto else spec_of(self.t, None)
        self.chosen: dict[str, Any] | None = None
        self.sample: list[Any] = []
        self.counts: Counter[str] = Counter()
        self.rows = 0
        self.width = 1
        self.unmeasured: list[Any] = []  # rows seen before the settings were chosen

    def add(self, texts: Sequence[Any]) -> "TextFitter":
        texts = list(texts)
        if self.spec is None:
            take = SAMPLE_ROWS - len(self.sample)
            self.sample += texts[:take]
            if len(self.sample) < SAMPLE_ROWS:
                return self
            self._settle()
            texts = texts[take:]
        tok = self._tokenizer()
        for t in texts:
            self.counts.update(set(tok.grams(t)))  # document frequency: one count per row
        self.rows += len(texts)
        return self

    def _tokenizer(self) -> Any:
        """The grams' tokeniser for the settled spec, made once (its fold translation is not
        free; the conversion asks for it every chunk)."""
        if getattr(self, "_tok", None) is None or self._tok.spec != self.spec:
            self._tok = PyTokenizer(self.spec)
        return self._tok

    def _settle(self) -> None:
        self.chosen = choose(self.sample, self.t.max_chars)
        self.spec = spec_of(self.t, self.chosen)
        sample, self.sample = self.sample, []
        self.add(sample)
        unmeasured, self.unmeasured = self.unmeasured, []
        self.measure(unmeasured)

    def measure(self, texts: Sequence[Any]) -> None:
        """Widen to the n-grams of these rows (their ids are at most as many)."""
        if self.spec is None:  # the settings are not chosen yet: measured once they are
            self.unmeasured += list(texts)
            return
        tok = self._tokenizer()
        count = (lambda g: len(set(g))) if self.spec.unique else len
        self.width = max(self.width, *(count(tok.grams(t)) for t in texts), 1)

    def finish(self) -> Any:
        if self.spec is None:
            self._settle()
        t, column, chosen = self.t, self.column, self.chosen
        vocab, idf = vocabulary_of(self.counts, self.rows, t.vocabulary_size, t.min_count)
        if not vocab:
            raise DataError(
                f"text column '{column}' has no n-gram that appears in {t.min_count} or more rows",
                hint="lower data.text.min_count, or check that the column really holds text",
            )
        tok = PyTokenizer(self.spec, vocab, idf=idf if self.spec.unique else None)
        if chosen is not None:  # what the run chose, and why (train prints it)
            most = f" (the {t.vocabulary_size:,} most frequent)"
            tok.chosen = [f"text column '{column}': {line}" for line in chosen["why"]] + [
                f"text column '{column}': vocabulary of {len(vocab):,} n-grams seen in "
                f"{t.min_count}+ training rows" + (most if len(vocab) >= t.vocabulary_size else "")
            ]
        return tok


class TextType(ColumnType):
    """A text column: n-gram ids from scratch (:class:`PyTokenizer`, a TF-IDF bag or
    a mean of learned vectors inside the model), or a pretrained encoder's WordPiece
    ids (:class:`~bigmodel_cli.features.wordpiece.WordPiece`, ``model.backbone``)."""

    name = "text"
    spellings = ("text",)
    saved_as = ("ngrams", "wordpiece")
    describe = "n-gram ids (from scratch) or a pretrained encoder's WordPiece ids"

    def fit(self, values: Sequence[Any], column: str, spelling: str, cfg: Any) -> Any:
        """An n-gram vocabulary from the training texts (an error when no n-gram is
        frequent enough); a backbone's WordPiece comes from its own vocabulary."""
        return TextFitter(column, cfg).add(values).finish()

    def owns(self, encoder: Any) -> bool:
        return getattr(encoder, "kind", None) in self.saved_as

    def to_doc(self, encoder: Any, input_name: str) -> dict[str, Any]:
        if encoder.kind == "ngrams":
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
        return {
            "kind": "wordpiece",
            "input": input_name,
            "sequence_length": encoder.sequence_length,
            "lowercase": encoder.lowercase,
            "strip_accents": encoder.strip_accents,
            "vocabulary": encoder.vocabulary,
        }

    def from_doc(self, doc: dict[str, Any], fold_table: Any) -> Any:
        if doc.get("kind") == "wordpiece":
            from bigmodel_cli.features.wordpiece import WordPiece

            return WordPiece(
                doc["vocabulary"], doc["sequence_length"], doc["lowercase"], doc["strip_accents"]
            )
        spec = TextSpec(
            doc["ngrams"], doc["max_tokens"], doc["max_chars"], bool(doc.get("unique", False))
        )
        return PyTokenizer(spec, doc["vocabulary"], fold_table)

    def core_input(self, encoder: Any, name: str, cfg: Any, context: dict[str, Any]):
        """int32 ids [rows, L] -> one vector: a fine-tuned backbone's mean token vector,
        a TF-IDF bag (the idf fitted with the vocabulary becomes a weight) or a mean bag."""
        import keras
        from keras import layers as L

        _, MaskedMean, TfidfBag = layers()
        ids = keras.Input(shape=(None,), name=name, dtype="int32")
        if cfg.model.backbone:
            from bigmodel_cli.features import backbone as pretrained

            _, BertInputs = pretrained.layers()
            if context.get("backbone") is None:  # one encoder for every text column
                folder = pretrained.resolve_backbone(cfg.model.backbone, context["base_dir"])
                context["backbone"] = pretrained.load_backbone(folder)
            seq = context["backbone"](BertInputs(name=f"bert_inputs_{name[4:]}")(ids))
            return ids, MaskedMean(name=f"pool_{name[4:]}")(seq["sequence_output"], ids)
        size = len(encoder.vocabulary) + 2
        emb = L.Embedding(size, cfg.model.embedding_dim, name=f"embed_{name[4:]}")(ids)
        if encoder.spec.unique:
            bag = TfidfBag(size, name=f"tfidf_{name[4:]}")
            out = bag(emb, ids)
            if encoder.idf is not None:
                bag.idf.assign(encoder.idf)
            return ids, out
        return ids, MaskedMean(name=f"bag_{name[4:]}")(emb, ids)

    def raw_layer(self, encoder: Any, name: str):
        if encoder.kind == "ngrams":
            return keras_tokenizer(encoder.spec, encoder.vocabulary, name=f"tokenize_{name}")
        from bigmodel_cli.features import backbone as pretrained

        BertTokenize, _ = pretrained.layers()
        return BertTokenize(
            encoder.vocabulary,
            encoder.sequence_length,
            encoder.lowercase,
            encoder.strip_accents,
            name=f"tokenize_{name}",
        )


TEXT = TextType()
