"""``bigmodel predict``: files (or stdin, or images) through the engine
:func:`~bigmodel_cli.inference.engine.open_engine` picks.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from bigmodel_cli.errors import ConfigError, DataError


def predict(
    run: str | Path,
    inputs: list[str],
    output: str | None = None,
    output_dir: str | None = None,
    probabilities: bool = False,
    columns: list[str] | None = None,
    batch_size: int | None = None,
    force: bool = False,
    input_format: str | None = None,
    unsafe: bool = False,
    progress: Any = None,
    engine: str = "auto",
    on_bad_value: str = "error",
    rename: dict[str, str] | None = None,
    coverage: float | None = None,
    sets: str = "lac",
):
    """Predict files. ``engine``: auto (the run's inference.onnx through
    onnxruntime when it matches model.keras, else TensorFlow), onnxruntime,
    or tensorflow. ``on_bad_value``: what a value that is not a number in a
    number column is: ``error`` (exit 2 naming the line and column) or
    ``missing`` (imputed, as an empty cell; under ``data.missing: impute``).
    ``coverage``: conformal sets (``sets``: lac or aps) or intervals at that coverage."""
    from bigmodel_cli.data.images import expand as image_files
    from bigmodel_cli.inference.engine import check_engine, open_engine, with_coverage
    from bigmodel_cli.inference.predict import predict_file
    from bigmodel_cli.model.conformal import check_coverage

    check_engine(engine)
    if coverage is not None:
        check_coverage(coverage)  # before the model is loaded
    if on_bad_value not in ("error", "missing"):
        raise ConfigError(f"unknown --on-bad-value '{on_bad_value}'", hint="use error or missing")
    images = image_files(inputs)
    files = [] if images else expand_inputs(inputs)
    if output_dir is None and len(files) > 1:
        raise ConfigError(
            f"{len(files)} input files need --output-dir, not --output",
            hint="e.g. --output-dir preds/",
        )
    e = open_engine(run, engine, unsafe=unsafe, probabilities=probabilities, columns=columns)
    cfg, model, spec, infer, used = e.cfg, e.model, e.spec, e.infer, e.name
    batch_size = batch_size or e.batch_size
    spec = with_coverage(replace(spec, on_bad_value=on_bad_value), coverage, sets)
    if rename:
        from bigmodel_cli.inference.reader import check_rename

        check_rename(rename, spec)
        spec = replace(spec, rename=dict(rename))
    if images:  # one row per image: its path and the prediction
        from bigmodel_cli.inference.predict import predict_images

        if cfg is None or not cfg.data.image_shape:
            raise ConfigError(
                "image inputs need a run trained on images (data.image_shape)",
                hint="predict a table of pixel columns instead",
            )
        r = predict_images(
            images,
            spec,
            infer,
            output or "-",
            cfg.data.image_shape,
            batch_size=min(batch_size or 256, 4096),
            force=force,
        )
        r.engine = used
        return [r]
    from bigmodel_cli.data import remote

    targets = _targets(files, output, output_dir, force)
    results = []
    for f, t in zip(files, targets):
        with _local_output(t, force) as local:
            r = predict_file(
                model,
                spec,
                f,
                local,
                infer=infer,
                batch_size=batch_size,
                force=True if local != t else force,
                fmt=input_format,
                progress=(lambda rows, s, frac, f=f: progress(f, rows, s, frac))
                if progress
                else None,
            )
        r.engine, r.input, r.output = used, remote.shown(f) if f != "-" else f, t
        results.append(r)
    return results


def _targets(
    files: list[str], output: str | None, output_dir: str | None, force: bool
) -> list[str]:
    """Where each input's predictions go: --output, or one file per input in --output-dir
    (none of which may exist without --force)."""
    from bigmodel_cli.data import remote

    if output_dir is None:
        return [output or "-"]
    if remote.is_url(output_dir):
        targets = [output_dir.rstrip("/") + "/" + _pred_name(f) for f in files]
    else:
        out_dir = Path(output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [str(out_dir / _pred_name(f)) for f in files]
    for t in [] if force else targets:
        if remote.exists(t) if remote.is_url(t) else Path(t).exists():
            from bigmodel_cli.errors import PathError

            raise PathError(f"output {t} exists already", hint="pass --force to overwrite it")
    return targets


@contextlib.contextmanager
def _local_output(target: str, force: bool):
    """A URL output is written locally first, then uploaded
    (remote.written_then_uploaded); a local one is itself."""
    from bigmodel_cli.data import remote

    if not remote.is_url(target):
        yield target
        return
    with remote.written_then_uploaded(target, force) as local:
        yield str(local)


def _pred_name(f: str) -> str:
    name = Path(f).name
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(ext)
    stem, _, suffix = name.rpartition(".")
    return f"{stem or name}.predictions.{suffix if stem else 'csv'}"


def expand_inputs(inputs: list[str]) -> list[str]:
    """The input files: globs expanded; URLs (and URL globs) fetched into the local cache."""
    import glob

    from bigmodel_cli.data import remote

    files: list[str] = []
    for pattern in inputs:
        if pattern == "-":
            files.append("-")
            continue
        if remote.is_url(pattern):
            files += [str(remote.fetch(u)) for u in remote.expand(pattern, "input")]
            continue
        pattern = remote.local_path(pattern)
        if any(ch in pattern for ch in "*?["):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise DataError(f"--input '{pattern}' matches no file")
            files += matched
        else:
            if not Path(pattern).exists():
                raise DataError(f"input file {pattern} does not exist")
            files.append(pattern)
    return files
