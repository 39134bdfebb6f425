"""A finished run read back: its config, its column encoders and its trained model.

Every command that reads a run (eval, predict, export, serve, resume) goes
through here, so a run folder is opened one way. Nothing here writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.config.load import read_yaml, validate
from bigmodel_cli.errors import ModelFileError
from bigmodel_cli.features import registry
from bigmodel_cli.runs import CONFIG_FILE, RunRef, resolve_run


def load_run_config(run_dir: Path) -> ExperimentConfig:
    f = run_dir / CONFIG_FILE
    if not f.is_file():
        raise ModelFileError(f"{run_dir} has no {CONFIG_FILE}; is it a run folder?")
    raw, node = read_yaml(f)
    return validate(raw, str(f), node)


def run_base_dir(run_dir: Path) -> Path:
    """The experiment folder a run belongs to (data paths are relative to it)."""
    return run_dir.resolve().parent.parent


def run_tokenizers(run_dir: Path | None, cfg: ExperimentConfig | None) -> dict[str, Any] | None:
    """The text tokenisers and category encoders a run was trained
    with (None when it has neither)."""
    if (
        run_dir is None
        or cfg is None
        or not any(registry.encoded(t) for t in (cfg.data.columns or {}).values())
    ):
        return None
    from bigmodel_cli.features.registry import load_tokenizers
    from bigmodel_cli.features.text import PREPROCESSING_DIR

    return load_tokenizers(run_dir / PREPROCESSING_DIR)


def load_run_model(
    run: str | Path, unsafe: bool = False
) -> tuple[RunRef, ExperimentConfig | None, Any]:
    """(where, config or None for a bare .keras file, the Keras model); imports TensorFlow."""
    from bigmodel_cli.model.loading import load_trained
    from bigmodel_cli.runtime import import_tensorflow

    ref = resolve_run(run)
    cfg = load_run_config(ref.run_dir) if ref.run_dir else None
    import_tensorflow()
    model = load_trained(ref.model_path, unsafe=unsafe, user_code_dir=ref.run_dir)
    return ref, cfg, model
