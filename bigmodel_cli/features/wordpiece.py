"""BERT WordPiece tokenisation in plain Python, for the ONNX path of pretrained encoders.

``model.keras`` of a ``model.backbone`` run tokenises inside the graph with
keras-hub's ``BertTokenizer`` (tensorflow-text ops). onnxruntime runs no string
ops, so ``bigmodel predict`` feeds the integer-id core from this module, which
needs neither TensorFlow nor keras-hub. The pre-tokenisation and the greedy
longest-match WordPiece below follow keras-hub 0.32's own TensorFlow-free path
(``keras_hub/src/tokenizers/word_piece_tokenizer.py`` and
``keras_hub/src/utils/tensor_utils.py``, Apache-2.0, the Keras team), which
keras-hub documents as equal to the tensorflow-text path; the run's parity
check compares the two on sample rows when the run is written.

Example::

    wp = WordPiece(vocabulary, sequence_length=64)
    wp.ids(["Héllo wörld"])   # int32 [1, 64]: [CLS] hello world [SEP] 0 ...
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any, Iterable, Sequence

import numpy as np

MAX_BYTES_PER_WORD = 100  # tf_text.FastWordpieceTokenizer maps longer words to [UNK]

_WHITESPACE = r"[ \t\n\r\f]|\p{Cc}|\p{Cf}"  # RE2's \s is ASCII only
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
_CJK = r"|".join(
    [
        r"[\u4E00-\u9FFF]",
        r"[\u3400-\u4DBF]",
        r"[\U00020000-\U0002A6DF]",
        r"[\U0002A700-\U0002B73F]",
        r"[\U0002B740-\U0002B81F]",
        r"[\U0002B820-\U0002CEAF]",
        r"[\uF900-\uFAFF]",
        r"[\U0002F800-\U0002FA1F]",
    ]
)
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


@functools.lru_cache(maxsize=1)
def _patterns():
    import regex  # the `regex` module: \p{..} classes like RE2's

    return regex.compile("|".join([_WHITESPACE, _PUNCTUATION, _CJK])), regex.compile(
        "|".join([_PUNCTUATION, _CJK])
    )


def _casefold(text: str) -> str:
    """tf_text.case_fold_utf8: NFKC_Casefold, default-ignorable code points dropped."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not any(lo <= ord(c) <= hi for lo, hi in _DEFAULT_IGNORABLE))


def pretokenize(text: str, lowercase: bool = True, strip_accents: bool = True) -> list[str]:
    if strip_accents:
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
        )
    split, keep = _patterns()
    words, position = [], 0
    for m in split.finditer(text):
        if m.start() > position:
            words.append(text[position : m.start()])
        if keep.fullmatch(m.group()):
            words.append(m.group())
        position = m.end()
    if position < len(text):
        words.append(text[position:])
    return [_casefold(w) for w in words] if lowercase else words


class WordPiece:
    """[CLS] pieces [SEP], 0-padded to ``sequence_length``, as keras-hub's BERT preprocessing."""

    kind = "wordpiece"

    def __init__(
        self,
        vocabulary: Sequence[str],
        sequence_length: int = 128,
        lowercase: bool = True,
        strip_accents: bool = True,
    ):
        self.vocabulary = list(vocabulary)
        self.index = {t: i for i, t in enumerate(self.vocabulary)}
        for tok in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if tok not in self.index:
                raise ValueError(
                    f"the vocabulary has no {tok} token: is it a BERT WordPiece vocabulary?"
                )
        self.sequence_length = int(sequence_length)
        self.lowercase, self.strip_accents = lowercase, strip_accents
        self.cls, self.sep, self.unk, self.pad = (
            self.index[t] for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]")
        )

    def _word(self, word: str) -> list[int]:
        if not word:
            return []
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [self.unk]
        out, start = [], 0
        while start < len(word):
            end, current = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.index:
                    current = self.index[sub]
                    break
                end -= 1
            if current is None:
                return [self.unk]
            out.append(current)
            start = end
        return out

    def pieces(self, text: Any) -> list[int]:
        if not isinstance(text, str):
            text = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        ids: list[int] = []
        for w in pretokenize(text, self.lowercase, self.strip_accents):
            ids += self._word(w)
            if len(ids) >= self.sequence_length:
                break
        return ids

    def ids(self, texts: Iterable[Any], length: int | None = None) -> np.ndarray:
        L = self.sequence_length
        rows = [[self.cls, *self.pieces(t)[: L - 2], self.sep] for t in texts]
        out = np.full((len(rows), L), self.pad, np.int32)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out
