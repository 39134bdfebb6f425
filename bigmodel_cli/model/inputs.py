"""A model's inputs: the core's (``features`` and one ids input per category, text
or date column, each built by its column type's ``core_input``) and the model
users get around the core, which takes the raw strings (``with_raw_text``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.features import registry
from bigmodel_cli.features.text import raw_input_name
from bigmodel_cli.model.numeric import preprocessing


def text_inputs(
    cfg: ExperimentConfig,
    n_numeric: int,
    x_numeric: np.ndarray | None,
    tokenizers: dict[str, Any],
    cfg_dir: Path | None = None,
):
    """Inputs of a core model with text: ``features`` (numbers, if any) and one
    int32 id input per text column, each an n-gram bag: TF-IDF weighted
    (``data.text.weighting: tfidf``, text.TfidfBag) or the mean of learned vectors
    (``mean``, fastText-style); returns (inputs dict, one flat vector)."""
    import keras
    from keras import layers as L

    from bigmodel_cli.features import text

    inputs: dict[str, Any] = {}
    parts = []
    plain: list = []  # the numbers before data.numeric_encoding (a trees member's)
    if n_numeric:
        inputs["features"] = keras.Input(shape=(n_numeric,), name="features", dtype="float32")
        parts.append(preprocessing(inputs["features"], cfg, x_numeric, plain))
    context = {"base_dir": Path.cwd() if cfg_dir is None else cfg_dir}  # one backbone for all
    for col, tok in tokenizers.items():
        name = text.ids_name(col)
        inputs[name], part = registry.kind_of_encoder(tok).core_input(tok, name, cfg, context)
        parts.append(part)
    x = parts[0] if len(parts) == 1 else L.Concatenate(name="inputs")(parts)
    x_plain = x
    if (
        plain and plain[0] is not parts[0]
    ):  # numbers encoded for the MLP: the trees' own concatenation
        x_plain = (
            plain[0]
            if len(parts) == 1
            else L.Concatenate(name="inputs_plain")([plain[0], *parts[1:]])
        )
    if cfg.model.dropout:
        same = x_plain is x
        x = L.Dropout(cfg.model.dropout, name="text_dropout")(x)
        x_plain = x if same else L.Dropout(cfg.model.dropout, name="text_dropout_plain")(x_plain)
    return inputs, x, x_plain


def with_raw_text(core, tokenizers: dict[str, Any], name: str | None = None):
    """The model users get: each encoded column as raw strings, encoded inside by its
    type's layer (:meth:`ColumnType.raw_layer`), then the trained core."""
    import keras

    from bigmodel_cli.features import text

    inputs: dict[str, Any] = {}
    feed: dict[str, Any] = {}
    core_inputs = core.input if isinstance(core.input, dict) else {"features": core.input}
    if "features" in core_inputs:
        inputs["features"] = feed["features"] = keras.Input(
            shape=tuple(core_inputs["features"].shape[1:]), name="features", dtype="float32"
        )
    for col, tok in tokenizers.items():
        raw_name = raw_input_name(col)
        raw = inputs[raw_name] = keras.Input(shape=(), name=raw_name, dtype="string")
        layer = registry.kind_of_encoder(tok).raw_layer(tok, raw_name)
        feed[text.ids_name(col)] = layer(raw)
    return keras.Model(inputs, core(feed), name=name or core.name)


def core_of(model):
    """The integer-id core inside a raw-text model (the model itself otherwise)."""
    if any(getattr(layer, "reads_raw_column", False) for layer in model.layers):
        inner = [
            layer for layer in model.layers if hasattr(layer, "layers") and hasattr(layer, "inputs")
        ]
        if inner:
            return inner[-1]
    return model
