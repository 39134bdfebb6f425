"""The data: section of experiment.yaml (and its text: and augment: parts): where the rows are,
which columns are what, and how they are read.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from bigmodel_cli.config.base import ColumnType, Strict


class TextConfig(Strict):
    """How text columns become ids (see bigmodel_cli/features/text.py)."""

    @field_validator("ngrams", "max_tokens")
    @classmethod
    def _in_range(cls, v: Any, info: Any) -> Any:
        top = {"ngrams": 5, "max_tokens": 100_000}[info.field_name]
        if v != "auto" and not 1 <= v <= top:
            raise ValueError(f"must be auto or a whole number from 1 to {top:,}")
        return v

    ngrams: int | Literal["auto"] = Field(
        2,
        description="n-grams of consecutive tokens (words; characters for "
        "Chinese/Japanese/Thai), 1-5; "
        "auto: chosen from the training texts, and the run says why",
    )
    max_tokens: int | Literal["auto"] = Field(
        2000,
        description="tokens read from each text (the rest is ignored), 1-100,000; with "
        "model.backbone, the sequence length; auto: the training texts' 99th percentile, up to "
        "2000",
    )
    max_chars: int = Field(
        20_000, ge=1, le=10_000_000, description="characters read from each text"
    )
    vocabulary_size: int = Field(
        200_000, ge=1, le=10_000_000, description="the most frequent n-grams kept"
    )
    min_count: int = Field(
        2, ge=1, description="an n-gram must appear in this many training rows to be kept"
    )
    weighting: Literal["tfidf", "mean"] = Field(
        "tfidf",
        description="how a text's n-grams make one vector: tfidf (each n-gram once, weighted by "
        "its idf on the training rows, L2-normalised: a linear model on TF-IDF features) or mean "
        "(the mean of their learned vectors, repeats counted: the earlier default)",
    )


class AugmentConfig(Strict):
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = Field(
        None, description="random flips"
    )
    rotation: float = Field(
        0.0, ge=0.0, le=1.0, description="random rotation, a fraction of a full turn either way"
    )
    zoom: float = Field(
        0.0, ge=0.0, lt=1.0, description="random zoom in or out by up to this fraction"
    )
    translation: float = Field(
        0.0, ge=0.0, lt=1.0, description="random shift by up to this fraction of height and width"
    )
    contrast: float = Field(
        0.0, ge=0.0, lt=1.0, description="random contrast change by up to this factor"
    )


class DataConfig(Strict):
    train: str | list[str] = Field(
        description="csv/tsv/parquet/jsonl/npz path (gzip by extension), a glob, a folder or a "
        "list of such shards, or keras:mnist"
    )
    validation: float | str | list[str] | None = Field(
        0.1, description="fraction of train held out, a path (or shards), or null"
    )
    test: str | list[str] | None = Field(None, description="optional test set path (or shards)")
    target: str = Field(description="the column to predict")
    features: list[str] | None = Field(
        None, description="null = every column but target and id columns"
    )
    id_columns: list[str] = Field(default_factory=list, description="passed through to predictions")
    image_shape: list[int] | None = Field(
        None, description="reshape flat feature columns to this shape"
    )
    scale: float | None = Field(None, description="divide inputs by this (inside the model)")
    normalize: bool = Field(
        False, description="standardise features with training mean/variance (inside the model)"
    )
    normalize_target: bool = Field(
        False,
        description="regression: train on the standardised target; the model outputs real units",
    )
    target_transform: Literal["none", "log"] = Field(
        "none",
        description="regression: log trains on log(1 + y) of a non-negative target, inverted "
        "inside the model (skewed prices, counts)",
    )
    delimiter: Literal["auto", ",", ";", "\t", "|"] = Field(
        "auto",
        description="csv/tsv files: the column delimiter; auto sniffs it from each file's header "
        "and first rows (, ; tab |)",
    )
    numeric_encoding: Literal["standard", "quantile", "piecewise"] = Field(
        "standard",
        description="number columns, after imputation: standard (standardised, if data.normalize), "
        "quantile (the training CDF, scaled: bounded, robust to heavy tails) or piecewise "
        "(a piecewise-linear encoding over equal-frequency bins, Gorishniy et al. 2022), "
        "inside the model",
    )
    bins: int = Field(
        16,
        ge=2,
        le=128,
        description="numeric_encoding: piecewise: bins per number column (fewer where it has fewer "
        "distinct values)",
    )
    one_hot_max: int = Field(
        16,
        ge=2,
        le=4096,
        description="a category column with up to this many ids (its values, plus missing and "
        "unseen) is one-hot; more get a learned vector",
    )
    classes: list[str | int] | None = Field(
        None, description="class labels in output order; null = sorted labels of train"
    )
    positive_label: str | int | None = Field(
        None,
        description="binary: the class the model's probability is for (precision, recall, F1 and "
        "the threshold are about it); null = the minority class of train (the later label when "
        "they tie), and it is said which",
    )
    missing: Literal["error", "drop", "fill", "impute"] = Field(
        "error",
        description="missing numbers: error, drop the row, fill with fill_value, or impute "
        "(training median + a missing flag, inside the model)",
    )
    fill_value: float = Field(
        0.0, description="data.missing: fill: the value that replaces a missing number"
    )
    columns: dict[str, ColumnType] | None = Field(
        None, description="type per feature column: number, category or text (others are inferred)"
    )
    max_categories: int = Field(
        10_000,
        ge=1,
        description="a category column keeps its most frequent values (the rest are 'unseen')",
    )
    text: TextConfig = Field(default_factory=TextConfig, description="tokenisation of text columns")
    stream: Literal["auto", True, False] = Field(
        "auto",
        description="read training data in blocks as it trains: true, false, or auto (when it "
        "would take over a quarter of RAM; image folders always)",
    )
    block_mb: float = Field(
        8.0,
        gt=0.0,
        le=1024.0,
        description="streaming: size of one float32 block file of the prepared cache",
    )
    shuffle_blocks: int = Field(
        2,
        ge=1,
        le=1024,
        description="streaming: rows are shuffled within a window of this many blocks of each "
        "partition",
    )
    cache: str = Field(
        "cache",
        description="streaming: the folder (relative to the experiment) of prepared block caches",
    )
    augment: AugmentConfig | None = Field(
        None,
        description="image augmentation while training: flip, rotation, zoom, translation, "
        "contrast",
    )

    @field_validator("validation")
    @classmethod
    def _validation(cls, v: Any) -> Any:
        if isinstance(v, float) and not (0.0 <= v < 1.0):
            raise ValueError(f"a validation fraction must be in [0, 1), got {v}")
        return v

    @field_validator("image_shape")
    @classmethod
    def _shape(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(d <= 0 for d in v)):
            raise ValueError(f"image_shape must be a list of positive integers, got {v}")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        if v is not None and (v <= 0 or not math.isfinite(v)):
            raise ValueError(f"scale must be a positive number, got {v}")
        return v
