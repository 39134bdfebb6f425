"""``bigmodel prepare``: the block cache that streamed training reads, built ahead of training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigmodel_cli.config.load import load_experiment
from bigmodel_cli.errors import ConfigError


def prepare(
    path: str | Path,
    overrides: list[str] | None = None,
    progress: Any = None,
    rebuild: bool = False,
) -> dict[str, Any]:
    """Convert an experiment's training data into the block cache that streamed
    training reads (``data.stream``); reuses a cache whose key still matches.
    Returns what :func:`.block_reader.describe` says of it."""
    cfg, base_dir = load_experiment(path, list(overrides or []))
    from bigmodel_cli.data import block_cache, block_reader
    from bigmodel_cli.data.streaming import stream_mode

    mode = stream_mode(
        cfg.model_copy(update={"data": cfg.data.model_copy(update={"stream": True})}), base_dir
    )
    if mode == "images":
        raise ConfigError(
            f"data.train {cfg.data.train} is an image folder: its images are decoded as "
            "training reads them, nothing to prepare"
        )
    return block_reader.describe(block_cache.prepare(cfg, base_dir, progress, rebuild=rebuild))
