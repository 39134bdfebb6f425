"""Images (issue 37, item 1): the one class that owns an image from its file to the model.

An image reaches the model as pixels: a file is decoded with Pillow (no TensorFlow:
predict's ONNX path uses this too), converted to ``data.image_shape``'s channels (1:
grey, 3: RGB), resized to its height and width, and flattened to pixel columns, the
layout of a pixel CSV such as the digit-recognizer one; in the model, the pixels are
reshaped to the image and (training only) augmented. :data:`IMAGE` owns each step:

- :meth:`ImageType.check`: files -> (the files, a mask of those that do not open as
  an image), from their headers, in threads; the error's words (``not a readable
  image``) are the type's, in training, streaming, predict and explain alike;
- :meth:`ImageType.fit`: what an image column learns is its shape (``data.image_shape``);
- :meth:`ImageType.encode`: files -> float32 pixels [n, H*W*C], 0..255;
- :meth:`ImageType.core_layers`: the in-model reshape and augmentation.

Where the files come from (a folder of class subfolders, a file list) is
:mod:`bigmodel_cli.data.images`'s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bigmodel_cli.errors import ConfigError, DataError
from bigmodel_cli.features.base import ColumnType

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


@dataclass(frozen=True)
class ImageShape:
    """An image column's encoder: the [height, width(, channels)] it is decoded to."""

    shape: tuple[int, ...]
    kind: str = "image"


class ImageType(ColumnType):
    """Image files decoded to pixels; a table holds no image column (images come as a
    folder or a list of files), so no ``data.columns`` spelling names this type."""

    name = "image"
    encoded = False  # pixels reach the model as number columns
    describe = "image files (PNG, JPEG, ...) decoded to pixels"

    def not_a(self, spelling: str) -> str:
        return "a readable image"

    def check(self, cells: Sequence[Any], spelling: str = "image") -> tuple[Any, np.ndarray]:
        """(the files, the mask of those that do not open as an image)."""
        return list(cells), np.array([why is not None for why in _unreadable(cells)], bool)

    def fit(self, values: Sequence[Any], column: str, spelling: str, cfg: Any) -> ImageShape:
        shape = cfg.data.image_shape
        if not shape:
            raise DataError(
                f"{column}: images need data.image_shape, the size to train at",
                hint="e.g. data.image_shape: [28, 28, 1] (grey) or [224, 224, 3] (colour)",
            )
        return ImageShape(tuple(int(s) for s in shape))

    def owns(self, encoder: Any) -> bool:
        return isinstance(encoder, ImageShape)

    def encode(self, encoder: ImageShape, parsed: Any) -> np.ndarray:
        return decode_many(list(parsed), list(encoder.shape))

    def core_layers(self, x, shape: Sequence[int], augment: Any, seed: int):
        """The pixels reshaped to the image, then augmented (``data.augment``; a no-op
        outside a training step, so no export holds it)."""
        from keras import layers as L

        x = L.Reshape(tuple(shape), name="image")(x)
        return augmentation(x, augment, seed) if augment is not None else x


IMAGE = ImageType()


def _unreadable(paths: Iterable[Any], threads: int = 4) -> list[str | None]:
    """For each file: None where it opens as an image (its header only: fast), else why not."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image, UnidentifiedImageError

    def bad(p: Any) -> str | None:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018  (the header is read)
            return None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(bad, paths, chunksize=256))


def check_readable(paths: list[Path], threads: int = 4) -> None:
    """Every file opens as an image; names the first that does not."""
    for p, why in zip(paths, _unreadable(paths, threads), strict=True):
        if why:
            raise DataError(
                f"{p}: not {IMAGE.not_a('image')} ({why})", hint="remove or replace that file"
            )


def decode(paths: Iterable[Path | str], shape: list[int]) -> np.ndarray:
    """Images -> float32 [n, H*W*C] pixel values 0..255 (as a pixel CSV holds them)."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise DataError(
            f"data.image_shape {shape} cannot hold images",
            hint="use [height, width, 1] for grey or [height, width, 3] for colour",
        )
    h, w = int(shape[0]), int(shape[1])
    mode = "RGB" if len(shape) == 3 and shape[2] == 3 else "L"
    rows = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                rows.append(np.asarray(im, dtype=np.float32).reshape(-1))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(
                f"{p}: not {IMAGE.not_a('image')} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''})",
                hint="remove or replace that file",
            ) from None
    return (
        np.stack(rows) if rows else np.zeros((0, h * w * (3 if mode == "RGB" else 1)), np.float32)
    )


def decode_many(paths: list[Path], shape: list[int], threads: int = 4) -> np.ndarray:
    """:func:`decode` in ``threads`` threads (Pillow releases the GIL while it decodes)."""
    if len(paths) < 64 or threads <= 1:
        return decode(paths, shape)
    from concurrent.futures import ThreadPoolExecutor

    step = -(-len(paths) // threads)
    with ThreadPoolExecutor(threads) as pool:
        return np.concatenate(
            list(pool.map(lambda a: decode(paths[a : a + step], shape), range(0, len(paths), step)))
        )


def augmentation(x, aug: Any, seed: int):
    """Random flips, rotations, zooms, translations and contrast (Keras
    preprocessing layers) in one :func:`_register_augment` layer, which changes
    images only when called with ``training=True`` (the training step)."""
    if len(x.shape) != 4:
        raise ConfigError(
            "data.augment works on images", hint="set data.image_shape, e.g. [28, 28, 1]"
        )
    settings = {k: v for k, v in aug.model_dump().items() if v}
    if not settings:
        return x
    return _register_augment()(settings=settings, seed=seed, name="augment")(x)


@functools.lru_cache(maxsize=1)
def _register_augment():
    """The Augment layer class, registered with Keras on first use.

    Keras's random layers run their random ops unless told ``training=False``,
    and an export traced without it would hold them (tf2onnx cannot convert
    StatelessRandomUniformV2 or ImageProjectiveTransformV3). Here anything but
    ``training=True`` passes images through, so model.keras, every export and
    the ONNX copy contain no augmentation at all."""
    import keras
    from keras import layers as L

    @keras.saving.register_keras_serializable(package="bigmodel")
    class Augment(keras.layers.Layer):
        def __init__(self, settings: dict[str, Any], seed: int = 0, **kwargs: Any):
            super().__init__(**kwargs)
            self.settings, self.seed = dict(settings), int(seed)
            a = self.settings
            self.steps = []
            if a.get("flip"):
                self.steps.append(L.RandomFlip(a["flip"], seed=seed, name="flip"))
            if a.get("rotation"):
                self.steps.append(
                    L.RandomRotation(
                        a["rotation"], fill_mode="constant", seed=seed + 1, name="rotation"
                    )
                )
            if a.get("zoom"):
                self.steps.append(
                    L.RandomZoom(a["zoom"], fill_mode="constant", seed=seed + 2, name="zoom")
                )
            if a.get("translation"):
                self.steps.append(
                    L.RandomTranslation(
                        a["translation"],
                        a["translation"],
                        fill_mode="constant",
                        seed=seed + 3,
                        name="translation",
                    )
                )
            if a.get("contrast"):
                self.steps.append(L.RandomContrast(a["contrast"], seed=seed + 4, name="contrast"))

        def call(self, x, training=None):
            if training is not True:
                return x
            for step in self.steps:
                x = step(x, training=True)
            return x

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "settings": self.settings, "seed": self.seed}

    return Augment
