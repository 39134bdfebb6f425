"""The Python entry points, one name per command; the CLI only parses arguments and renders results.

A thin face: each command lives in :mod:`bigmodel_cli.commands` (one module
per command) and is re-exported here, so ``from bigmodel_cli import api`` is
the one import a script needs.

Example::

    from bigmodel_cli import api
    api.init("exp", "linear")
    out = api.train("exp", overrides=["train.epochs=10"])
    api.evaluate(out.run_dir).metrics["mse"]
"""

from __future__ import annotations

from pathlib import Path

from bigmodel_cli.commands.eval import EvalOutcome, evaluate, predict_arrays
from bigmodel_cli.commands.explain import explain
from bigmodel_cli.commands.export import export
from bigmodel_cli.commands.info import info
from bigmodel_cli.commands.init import init, init_data, templates
from bigmodel_cli.commands.predict import expand_inputs, predict
from bigmodel_cli.commands.prepare import prepare
from bigmodel_cli.commands.train import RESUMABLE_KEYS, TrainOutcome, _prepare_resume, train
from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.config.load import load_experiment
from bigmodel_cli.model.saved import load_run_config, run_tokenizers
from bigmodel_cli.runs import resolve_run

__all__ = [
    "EvalOutcome",
    "RESUMABLE_KEYS",
    "TrainOutcome",
    "evaluate",
    "expand_inputs",
    "explain",
    "export",
    "info",
    "init",
    "init_data",
    "load_run_config",
    "predict",
    "predict_arrays",
    "prepare",
    "resolve_run",
    "resolved_config",
    "resumed_config",
    "run_tokenizers",
    "templates",
    "train",
]


def resolved_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The experiment's config with ``--set`` overrides applied and checked."""
    cfg, _ = load_experiment(path, overrides)
    return cfg


def resumed_config(run: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The config ``train RUN --resume`` would continue with (only resumable keys may change)."""
    return _prepare_resume(Path(run), list(overrides or []))[1]
