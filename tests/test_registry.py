"""The column-type registry (issue 21): one place says what a type means."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.config import COLUMN_TYPES
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

    from bigmodel_cli.config import load_experiment

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
