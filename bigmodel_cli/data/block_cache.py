"""The block cache of a streamed table: the folder named by a key of the files and the settings
that shape the blocks, reused while the key matches, else converted (twice over a table with
text) under a lock, so that workers started together convert once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.data.block_format import MANIFEST, Schema, cache_key
from bigmodel_cli.data.block_reader import Prepared
from bigmodel_cli.data.blocks import Converter, Progress, read_chunks
from bigmodel_cli.errors import ConfigError, DataError
from bigmodel_cli.features import registry


def _stat(p: Path) -> dict[str, Any]:
    from bigmodel_cli.data.remote import origin

    remote = origin(p)
    if (
        remote is not None
    ):  # a fetched object: its URL and ETag/generation, not the local copy's time
        return {"url": remote["url"], "identity": remote["identity"], "size": remote.get("size")}
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def source_files(cfg: ExperimentConfig, base_dir: Path, role: str) -> list[Path]:
    from bigmodel_cli.data.sources import resolve_path, shard_paths

    spec = getattr(cfg.data, role)
    paths = shard_paths(spec, base_dir, role)
    return paths if paths is not None else [resolve_path(str(spec), base_dir)]


def schema_of(cfg: ExperimentConfig, first: Path) -> Schema:
    """Features and their types, from data.features/data.columns or
    the first chunk of the first file."""
    from bigmodel_cli.data import tables as D

    df, _ = next(read_chunks(first, delimiter=cfg.data.delimiter))
    feats = D.feature_columns(df, cfg)
    if not feats:
        raise DataError(
            f"{first} has no feature columns besides the target", hint="list them in data.features"
        )
    D.check_columns(df, feats, "feature")
    D.check_columns(df, [cfg.data.target], "target")
    columns = D.infer_column_types(df, feats, cfg.data.columns)
    text = registry.columns_of(columns, feats, registry.TEXT)
    if text and cfg.model.backbone:
        raise ConfigError(
            f"streaming does not read text columns for a pretrained encoder yet "
            f"(model.backbone): {', '.join(text)}",
            hint="set data.stream: false to load the data in memory",
        )

    from bigmodel_cli.features.date import resolve_format

    # a date column's format is read from the first chunk (one pass: the blocks hold its parts)
    for c in registry.columns_of(columns, feats, registry.DATE):
        columns[c] = resolve_format(df[c].to_numpy(dtype=object).tolist(), c, columns[c])
    return Schema(feats, columns, cfg.data.target, cfg.task)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock file: workers started together convert once, the others wait."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _halved(progress: Progress, half: int) -> Progress:
    """The progress of one of two passes over the same bytes, as half the bar."""
    return lambda done, total, rows: progress(half * (total // 2) + done // 2, total, rows)


def prepare(
    cfg: ExperimentConfig, base_dir: Path, progress: Progress | None = None, rebuild: bool = False
) -> "Prepared":
    """The block cache of the training data (and a validation file, if given):
    reused when its key matches, else converted in one pass."""
    t0 = time.perf_counter()
    roles = ["train"] + (["validation"] if isinstance(cfg.data.validation, (str, list)) else [])
    files = {r: source_files(cfg, base_dir, r) for r in roles}
    schema = schema_of(cfg, files["train"][0])
    sources = {r: [_stat(p) for p in ps] for r, ps in files.items()}
    key = cache_key(cfg, schema, sources)
    root = (base_dir / cfg.data.cache).resolve()
    stem = Path(str(files["train"][0])).name.split(".")[0][:40] or "data"
    folder = root / f"{stem}-{key[:12]}"
    with _locked(root / f".{key[:12]}.lock"):
        if not rebuild:
            found = Prepared.open(folder, key)
            if found is not None:
                return found
        tmp = root / f".{folder.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        conv = None
        try:
            total = sum(s["size"] for ss in sources.values() for s in ss)
            texts = None
            passes = [None, progress]
            if schema.texts and progress is not None:  # two passes: each half the bar
                passes = [_halved(progress, 0), _halved(progress, 1)]
            if schema.texts:  # a first pass fits the vocabularies: the blocks hold ids
                fit = Converter(cfg, schema, tmp, passes[0], total)
                for role, paths in files.items():
                    for p in paths:
                        fit.add_file(p, role)
                texts, widths = fit.text_fit()
                schema = replace(schema, text_widths=widths)
            conv = Converter(cfg, schema, tmp, passes[1], total, texts)
            for role, paths in files.items():
                for p in paths:
                    conv.add_file(p, role)
            manifest = conv.finish(key, sources, time.perf_counter() - t0)
            (tmp / MANIFEST).write_text(json.dumps(manifest))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        except Exception as e:
            from bigmodel_cli.errors import DiskFull, disk_full, human_size, is_disk_full

            if is_disk_full(e):
                done = (
                    sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
                    if tmp.is_dir()
                    else 0
                )
                full = disk_full(e, root, None)
                # float32 rows so far, scaled by how much of the input they came from
                need = (
                    int(conv.rows_read * schema.width * 4 * conv.total_bytes / conv.done_bytes)
                    if conv is not None and conv.done_bytes
                    else None
                )
                raise DiskFull(
                    str(folder),
                    full.free,
                    need,
                    f"no space left writing the block cache {folder}: "
                    f"{human_size(full.free)} free after {human_size(done)} of blocks, "
                    f"about {human_size(need)} needed",
                    hint="free some space, or point data.cache elsewhere (now "
                    f"{cfg.data.cache}); the training files were not touched",
                ) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for stale in root.glob(f".{stem}-*.tmp"):  # left by a killed conversion
            with contextlib.suppress(OSError, ValueError):
                if not Path(f"/proc/{int(stale.name.rsplit('.', 2)[-2])}").exists():
                    shutil.rmtree(stale, ignore_errors=True)
    found = Prepared.open(folder, key)
    assert found is not None
    found.converted = True
    return found
