"""The block cache's format, shared by its writer (blocks) and its reader (block_reader): the
format version, the manifest's name and the schema of the columns kept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bigmodel_cli.config import ExperimentConfig
from bigmodel_cli.features import registry

VERSION = 1


MANIFEST = "manifest.json"


@dataclass
class Schema:
    features: list[str]
    columns: dict[
        str, str
    ]  # feature -> type, as data.columns (the manifest's on-disk key stays "types")
    target: str
    task: str

    @property
    def numeric(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.NUMBER)

    @property
    def categories(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.CATEGORY)

    @property
    def width(self) -> int:
        return len(self.numeric) + len(self.categories) + 1


PARTITIONS = 12  # canonical partitions: 1, 2, 3, 4, 6 or 12 workers read disjoint shares


def cache_key(
    cfg: ExperimentConfig, schema: Schema, sources: dict[str, list[dict[str, Any]]]
) -> str:
    d = cfg.data
    fraction = d.validation if isinstance(d.validation, float) else None
    doc = {
        "version": VERSION,
        "partitions": PARTITIONS,
        "sources": sources,
        "features": schema.features,
        "types": schema.columns,
        "target": schema.target,
        "task": schema.task,
        "missing": d.missing,
        "fill_value": d.fill_value,
        "validation": fraction,
        "seed": cfg.seed if fraction else None,
        "block_mb": d.block_mb,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
