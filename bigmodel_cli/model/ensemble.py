"""Ensembles (``model.ensemble``): each member's head on the shared inputs, the
Stack/Mean layers that answer their (validation-weighted) mean, and the greedy
selection of member weights (Caruana et al., 2004).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import ConfigError
from bigmodel_cli.model.architectures import BUILTINS, declarative, load_hook


MEMBERS = "ensemble_members"


def member_architectures(cfg: ExperimentConfig) -> list[str | None]:
    """Each ensemble member's architecture: ``model.architecture`` (or ``model.layers``),
    the last ``model.tree_members`` of them ``trees``."""
    m = cfg.model
    return [m.architecture] * (m.ensemble - m.tree_members) + ["trees"] * m.tree_members


def _head_of(
    cfg: ExperimentConfig, x: Any, n_out: int, base_dir: Path, name: str, arch: str | None
):
    """One member's layers from the preprocessed inputs ``x`` to its output."""
    import keras

    if cfg.model.layers is not None and arch != "trees":
        return declarative(x, cfg.model.layers)
    if arch in BUILTINS:
        return BUILTINS[arch](x, n_out, cfg.task, cfg=cfg, name=name)
    if arch and ":" in arch:
        fn = load_hook(arch, base_dir)
        inner = fn(input_shape=tuple(x.shape[1:]), num_outputs=n_out, config=cfg)
        if not isinstance(inner, keras.Model):
            raise ConfigError(
                f"model.architecture: {arch} returned {type(inner).__name__}, not a keras.Model"
            )
        return inner(x)
    raise ConfigError(
        f"model.architecture: unknown architecture '{arch}'",
        hint="built-ins: " + ", ".join(BUILTINS) + "; or model.py:build; or list model.layers",
    )


def set_member_weights(model, weights: "np.ndarray") -> bool:
    """Give a ``model.ensemble_weights: validation`` ensemble its
    members' weights; False if it has none."""
    try:
        layer = model.get_layer("ensemble")
    except ValueError:
        return False
    if not getattr(layer, "weighted", False):
        return False
    layer.member_weights.assign(np.asarray(weights, np.float32))
    return True


def select_members(loss: Callable[[np.ndarray], float], k: int, rounds: int = 25) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al., 2004): ``rounds``
    times, add the member whose addition gives the lowest ``loss(weights)``; the
    weights are how often each was picked. Ties go to the lower index, so every
    process picks the same."""
    counts = np.zeros(k, np.float64)
    for _ in range(rounds):
        scores = []
        for j in range(k):
            trial = counts.copy()
            trial[j] += 1
            scores.append(loss(trial / trial.sum()))
        counts[int(np.argmin(scores))] += 1
    return (counts / counts.sum()).astype(np.float32)


def members_model(model):
    """The model's ensemble members, stacked [batch, members, outputs], sharing its
    weights (None without ``model.ensemble``): what the training step's losses see."""
    import keras

    try:
        layer = model.get_layer(MEMBERS)
    except ValueError:
        return None
    return keras.Model(model.inputs, layer.output)


@functools.lru_cache(maxsize=1)
def _register_ensemble():
    import keras

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Stack(keras.layers.Layer):
        """K outputs [batch, n] -> [batch, K, n]."""

        def call(self, xs):
            from keras import ops

            return ops.stack([ops.cast(x, "float32") for x in xs], axis=1)

        def compute_output_shape(self, input_shape):
            return (input_shape[0][0], len(input_shape), *input_shape[0][1:])

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Mean(keras.layers.Layer):
        """[batch, K, n] -> [batch, n]: the members' average; ``weighted``: by the
        weights in ``member_weights`` (equal until :func:`set_member_weights`)."""

        def __init__(self, weighted: bool = False, **kwargs: Any):
            super().__init__(**kwargs)
            self.weighted = bool(weighted)

        def build(self, input_shape):
            if self.weighted:
                k = input_shape[1]
                self.member_weights = self.add_weight(
                    shape=(k,),
                    initializer=keras.initializers.Constant(1.0 / k),
                    trainable=False,
                    name="member_weights",
                )

        def call(self, x):
            from keras import ops

            if self.weighted:
                return ops.einsum(
                    "bkn,k->bn", ops.cast(x, "float32"), ops.cast(self.member_weights, "float32")
                )
            return ops.mean(x, axis=1)

        def get_config(self):
            return {**super().get_config(), "weighted": self.weighted}

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *input_shape[2:])

    return Stack, Mean
