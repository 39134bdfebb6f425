"""The block cache's format, shared by its writer (blocks) and its reader (block_reader): the
format version, the manifest's name and the schema of the columns kept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.features import registry
from bigmodel_cli.features.date import PARTS as DATE_PARTS

VERSION = 2  # 2: date columns (their parts, not yet standardised) and text columns (ids)


MANIFEST = "manifest.json"


@dataclass
class Schema:
    features: list[str]
    columns: dict[
        str, str
    ]  # feature -> type, as data.columns (the manifest's on-disk key stays "types")
    target: str
    task: str
    # text column -> ids a row holds on disk (the most any row has: known after the
    # vocabulary pass)
    text_widths: dict[str, int] = field(default_factory=dict)

    @property
    def numeric(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.NUMBER)

    @property
    def categories(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.CATEGORY)

    @property
    def dates(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.DATE)

    @property
    def texts(self) -> list[str]:
        return registry.columns_of(self.columns, self.features, registry.TEXT)

    @property
    def width(self) -> int:
        """A row on disk: its numbers, category codes, each date's parts, each text's ids
        (zero-padded), the target."""
        fixed = len(self.numeric) + len(self.categories) + DATE_PARTS * len(self.dates)
        return fixed + sum(self.text_widths.get(c, 0) for c in self.texts) + 1


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
        "text": d.text.model_dump() if schema.texts else None,  # the ids depend on it
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
