"""The column-type registry (issue 21): one place says what a type means."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.config.base import COLUMN_TYPES
from bigmodel_cli.features import registry
from bigmodel_cli.features.registry import CATEGORY, DATE, NUMBER, TEXT

PKG = Path(__file__).resolve().parent.parent / "bigmodel_cli"
TYPE_WORDS = set(COLUMN_TYPES)


def test_every_config_spelling_has_one_kind():
    assert {s for k in registry.KINDS for s in k.spellings} == TYPE_WORDS
    assert registry.kind(None) is NUMBER and registry.kind("date_dmy") is DATE
    assert [k.encoded for k in (NUMBER, CATEGORY, TEXT, DATE)] == [False, True, True, True]
    with pytest.raises(ValueError, match="unknown column type 'color'"):
        registry.kind("color")


def test_columns_of_keeps_the_feature_order():
    types = {"b": "text", "c": "date_iso", "d": "category"}
    feats = ["a", "b", "c", "d", "e"]
    assert registry.columns_of(types, feats, NUMBER) == ["a", "e"]
    assert registry.columns_of(types, feats, DATE, TEXT) == ["b", "c"]
    assert registry.encoded_columns(types, feats) == ["b", "c", "d"]


def _cfg(tmp_path):
    import yaml

    from bigmodel_cli.config.load import load_experiment

    (tmp_path / "experiment.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "task": "binary",
                "data": {"train": "x.csv", "target": "y", "text": {"min_count": 1}},
                "model": {"layers": [{"Dense": {"units": 1}}]},
            }
        )
    )
    return load_experiment(tmp_path, [])[0]


def test_fit_save_load_round_trip_for_every_encoded_kind(tmp_path):
    cfg = _cfg(tmp_path)
    values = {
        CATEGORY: np.array(["red", "blue", "red", None, "green"], dtype=object),
        TEXT: np.array(["a good day", "a bad day", "good good", "", "day"], dtype=object),
        DATE: np.array(
            ["2024-01-31", "2023-12-01", None, "2022-02-28", "2021-07-04"], dtype=object
        ),
    }
    encoders = {k.name: k.fit(v, k.name, k.name, cfg) for k, v in values.items()}
    for name, enc in encoders.items():
        assert registry.kind_of_encoder(enc) is registry.kind(name)
    registry.save_tokenizers(tmp_path / "pre", encoders)
    back = registry.load_tokenizers(tmp_path / "pre")
    for k, v in values.items():
        a, b = encoders[k.name].ids(v), back[k.name].ids(v)
        np.testing.assert_array_equal(np.nan_to_num(a, nan=-1), np.nan_to_num(b, nan=-1))


def test_no_module_compares_type_names_but_the_registry():
    """A type string compared with ==, != or in anywhere else is a second registry."""
    found = []
    for path in PKG.rglob("*.py"):
        if path.name == "registry.py" or path.name == "config.py":
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Compare):
                for side in [n.left, *n.comparators]:
                    if not isinstance(side, ast.Constant) or side.value not in TYPE_WORDS:
                        continue
                    if path.name == "date.py" and side.value.startswith(
                        "date_"
                    ):  # the date module reads its own formats
                        continue
                    found.append(f"{path.relative_to(PKG)}:{n.lineno} compares '{side.value}'")
    assert not found, found


# Choosing a column's type (init --data's profile, read_table's inference) names
# the types it chooses between; what a type *does* is asked of the type itself.
CHOOSERS = {"data/profile.py", "data/tables.py"}


def test_no_step_outside_features_switches_on_a_type():
    """Outside ``features/``, no ``is``/``==`` test of a kind (``kind_of_encoder(t) is
    CATEGORY``, ``registry.kind(s) is TEXT``) and no isinstance test of an encoder
    class: each such switch is a step the type's own class should own (issue 37)."""
    kinds = {"NUMBER", "CATEGORY", "TEXT", "DATE"}
    encoders = {"CategoryEncoder", "DateEncoder", "PyTokenizer", "WordPiece"}
    found = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("features/"):
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Compare) and rel not in CHOOSERS:
                for side in [n.left, *n.comparators]:
                    name = side.attr if isinstance(side, ast.Attribute) else getattr(side, "id", "")
                    if name in kinds:
                        found.append(f"{rel}:{n.lineno} tests a kind ({name})")
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "isinstance":
                for a in ast.walk(n.args[1]) if len(n.args) > 1 else []:
                    name = a.attr if isinstance(a, ast.Attribute) else getattr(a, "id", "")
                    if name in encoders:
                        found.append(f"{rel}:{n.lineno} tests an encoder class ({name})")
    assert not found, found


def test_every_type_checks_encodes_and_round_trips_through_the_road(tmp_path):
    """One road: the same cells give the same ids whichever reader hands them over
    (pandas or Arrow), and a bad value is the same error, naming the row."""
    import pandas as pd
    import pyarrow as pa

    from bigmodel_cli.errors import DataError
    from bigmodel_cli.features.road import ArrowCells, FrameCells, Layout, Where, encode_rows

    cfg = _cfg(tmp_path)
    df = pd.DataFrame(
        {
            "n": ["1.5", "", "true", "7"],
            "c": ["red", None, "blue", "red"],
            "t": ["a good day", "a bad day", "", "good"],
            "d": ["2024-01-31", "", "2022-02-28", "2021-07-04"],
        }
    )
    types = {"c": "category", "t": "text", "d": "date_iso"}
    encoders = {
        c: registry.kind(types[c]).fit(df[c].tolist(), c, types[c], cfg) for c in ("c", "t", "d")
    }
    layout = Layout(["n", "c", "t", "d"], types, encoders)
    a, raw_a = encode_rows(FrameCells(df), layout)
    b, raw_b = encode_rows(ArrowCells(pa.RecordBatch.from_pandas(df)), layout)
    assert sorted(a) == sorted(b) == ["features", "ids_c", "ids_d", "ids_t"]
    for k in a:
        np.testing.assert_array_equal(np.nan_to_num(a[k], nan=-9), np.nan_to_num(b[k], nan=-9))
    np.testing.assert_array_equal(a["features"][:, 0], np.float32([1.5, np.nan, 1.0, 7.0]))
    assert raw_a == raw_b and raw_a["c"][1] == ""
    raw, _ = encode_rows(FrameCells(df), Layout(layout.features, types))  # the Keras model's feed
    assert list(raw["d"]) == list(df["d"].fillna("")) and "ids_d" not in raw
    for col, cell, words in (
        ("n", "forty", "row 3, column 'n' is not a number: 'forty'"),
        ("d", "31/02/2024", "row 3, column 'd' is not a date (yyyy-mm-dd): '31/02/2024'"),
    ):
        bad = df.copy()
        bad.loc[2, col] = cell
        for cells in (FrameCells(bad), ArrowCells(pa.RecordBatch.from_pandas(bad))):
            with pytest.raises(
                DataError, match=r"^f\.csv: " + words.replace("(", r"\(").replace(")", r"\)")
            ):
                encode_rows(cells, layout, where=Where("f.csv"))
            x, _ = encode_rows(cells, layout, on_bad="missing")  # or read as missing
            got = x["features"][2, 0] if col == "n" else x["ids_d"][2, 0]
            assert np.isnan(got)


def test_a_validated_config_is_immutable_and_resolved_makes_a_new_one(tmp_path):
    """Run state is explicit (issue 37, item 5): no assignment changes a config that
    commands share; what a run learns is a new object, the original left as it was."""
    from pydantic import ValidationError

    from bigmodel_cli.config.load import resolved

    cfg = _cfg(tmp_path)
    for obj, key, value in ((cfg.train, "precision", "bfloat16"), (cfg.data, "features", ["a"])):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(obj, key, value)
    assert cfg.train.loss and cfg.train.metrics  # the defaults validation filled in
    new = resolved(
        cfg, features=["x"], classes=[0, 1], columns={"x": "number"}, precision="float32"
    )
    assert new is not cfg and new.data.features == ["x"] and new.data.classes == [0, 1]
    assert new.train.precision == "float32" and cfg.data.features != ["x"]
    assert resolved(cfg) is cfg


def test_the_image_type_checks_fits_encodes_and_builds_its_layers(tmp_path):
    """An image goes through one class: a file that is not an image is found by its
    header and named in the type's words, the same words decoding uses; encoding is
    decoding at the fitted shape; the in-model layers reshape the pixels."""
    from types import SimpleNamespace

    from PIL import Image

    from bigmodel_cli.errors import DataError
    from bigmodel_cli.features.image import IMAGE, ImageShape, check_readable, decode

    good = tmp_path / "a.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png at all")
    files, mask = IMAGE.check([good, bad, good])
    assert files == [good, bad, good] and mask.tolist() == [False, True, False]
    with pytest.raises(DataError, match=r"b\.png: not a readable image") as checked:
        check_readable([good, bad])
    with pytest.raises(DataError, match=r"b\.png: not a readable image") as decoded:
        decode([bad], [6, 8, 1])
    assert str(checked.value).split(" (")[0] == str(decoded.value).split(" (")[0]

    encoder = IMAGE.fit(
        [good], "image", "image", SimpleNamespace(data=SimpleNamespace(image_shape=[3, 4, 1]))
    )
    assert encoder == ImageShape((3, 4, 1)) and IMAGE.owns(encoder) and not NUMBER.owns(encoder)
    pixels = IMAGE.encode(encoder, [good, good])
    assert pixels.shape == (2, 12) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, decode([good, good], [3, 4, 1]))
    with pytest.raises(DataError, match="data.image_shape"):
        IMAGE.fit([good], "image", "image", SimpleNamespace(data=SimpleNamespace(image_shape=None)))

    import keras

    x = keras.Input((12,))
    assert tuple(IMAGE.core_layers(x, [3, 4, 1], None, 0).shape) == (None, 3, 4, 1)
