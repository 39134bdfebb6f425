"""A saved ``model.keras`` read back: bigmodel's layers registered first, the
Keras version it was saved with checked, a failure said in one line.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bigmodel_cli.errors import ConfigError, ModelFileError
from bigmodel_cli.features.number import impute_class
from bigmodel_cli.model.architectures import _register_trees, load_hook
from bigmodel_cli.model.builders import _register_temperature
from bigmodel_cli.model.ensemble import _register_ensemble
from bigmodel_cli.features.image import _register_augment
from bigmodel_cli.model.numeric import _register_expm1, _register_piecewise


def register_layers() -> None:
    """Make bigmodel's own layers known to Keras before a model file is loaded."""
    from bigmodel_cli.features import category as categories
    from bigmodel_cli.features import date as dates
    from bigmodel_cli.features import text

    text.layers()
    categories.layers()
    dates.layers()
    impute_class()
    _register_augment()
    _register_piecewise()
    _register_expm1()
    _register_ensemble()
    _register_trees()
    _register_temperature()


def _saved_keras_version(path: Path) -> str | None:
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except Exception:
        return None


def _version_tuple(v: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def load_trained(path: Path, unsafe: bool = False, user_code_dir: Path | None = None):
    """Load a ``.keras`` file with Keras's safe mode; every failure is one clear line.

    ``user_code_dir``: a run folder holding a copied ``model.py`` whose custom
    layers must be importable before loading."""
    import zipfile

    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a valid .keras file (corrupt or truncated)",
            hint="re-export it, or use the run's checkpoints/best.keras",
        )
    saved = _saved_keras_version(path)
    if saved is None:
        raise ModelFileError(
            f"{path} is not a valid .keras file (no metadata.json; corrupt or truncated)",
            hint="re-export it, or use the run's checkpoints/best.keras",
        )
    newer = _version_tuple(saved)[:2] > _version_tuple(keras.__version__)[:2]
    if _version_tuple(saved)[:1] > _version_tuple(keras.__version__)[:1]:
        raise ModelFileError(
            f"{path} was saved by Keras {saved}, a newer format than the installed Keras "
            f"{keras.__version__}",
            hint=f"upgrade: pip install 'keras>={saved}'",
        )
    if user_code_dir is not None and (user_code_dir / "model.py").is_file():
        with contextlib.suppress(ConfigError):
            load_hook("model.py:build", user_code_dir)
    from bigmodel_cli.features.backbone import import_if_needed

    register_layers()
    import_if_needed(path)  # and keras-hub's, for a model.backbone run
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as e:
        text = str(e)
        if "Lambda" in text or "safe_mode" in text or "arbitrary code" in text:
            raise ModelFileError(
                f"{path} contains a Lambda layer (Python code); refused by Keras safe mode",
                hint="pass --unsafe only if you trust where this file came from",
            ) from None
        raise ModelFileError(
            _load_failure(path, text, saved, newer),
            hint=f"upgrade: pip install 'keras>={saved}'" if newer else None,
        ) from None
    except Exception as e:  # any other failure of a file we did not write is bad input
        raise ModelFileError(
            _load_failure(path, f"{type(e).__name__}: {e}", saved, newer),
            hint=f"upgrade: pip install 'keras>={saved}'"
            if newer
            else "the file may be corrupt; use the run's checkpoints/best.keras",
        ) from None


def _load_failure(path: Path, text: str, saved: str | None, newer: bool) -> str:
    first = text.strip().splitlines()[0][:200] if text.strip() else "unknown error"
    if newer:
        return (
            f"{path} was saved by Keras {saved}, newer than the installed one, and does not "
            f"load: {first}"
        )
    return f"cannot load {path}: {first}"
