"""Image folders: one subfolder per class of PNG/JPEG files (the ImageFolder layout).

Images are decoded with Pillow (no TensorFlow: predict's ONNX path uses this
too), converted to ``data.image_shape``'s channels (1: grey, 3: RGB), resized
to its height and width, and flattened to pixel columns, the layout of a
pixel CSV such as the digit-recognizer one. So the same experiment trains on
``data/train.csv`` or on ``data/train/<class>/*.png`` with only the path
changed. Unless ``data.stream: false`` they are decoded as training goes
(:class:`StreamedImages`, in a few threads), so memory does not grow with the
number of images; the order is the in-memory order, ``rng([seed, epoch])``.

Example::

    folder = ImageFolder.find(Path("data/train"))
    x, labels, paths = decode_folder(folder, [28, 28, 1])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from bigmodel_cli.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


@dataclass
class ImageFolder:
    root: Path
    files: list[Path]
    labels: list[str]

    @classmethod
    def find(cls, root: Path) -> "ImageFolder | None":
        """The layout if ``root`` is a folder of class subfolders holding images, else None."""
        if not root.is_dir():
            return None
        subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files, labels = [], []
        for d in subs:
            imgs = sorted(p for p in d.rglob("*") if p.is_file() and is_image(p))
            files += imgs
            labels += [d.name] * len(imgs)
        if not files:
            return None
        return cls(root, files, labels)


def folder_of(spec: object, base_dir: Path) -> "ImageFolder | None":
    """The image folder a ``data.<role>`` value names, if it names one."""
    from bigmodel_cli.data.remote import is_url

    if not isinstance(spec, str) or spec.startswith("keras:") or is_url(spec):
        return None
    from bigmodel_cli.data.sources import resolve_path

    path = resolve_path(spec, base_dir)
    return ImageFolder.find(path) if path.is_dir() else None


def need_shape(root: Path, shape: list[int] | None, role: str) -> list[int]:
    if not shape:
        raise DataError(
            f"data.{role} is an image folder ({root}); set data.image_shape to the size to "
            "train at",
            hint="e.g. data.image_shape: [28, 28, 1] (grey) or [224, 224, 3] (colour)",
        )
    return shape


def pixel_names(shape: list[int]) -> list[str]:
    return [f"pixel{i}" for i in range(int(np.prod(shape)))]


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
                f"{p}: not a readable image ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''})",
                hint="remove or replace that file",
            ) from None
    return (
        np.stack(rows) if rows else np.zeros((0, h * w * (3 if mode == "RGB" else 1)), np.float32)
    )


def check_readable(paths: list[Path], threads: int = 4) -> None:
    """Every file opens as an image (its header only: fast); names the first that does not."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image, UnidentifiedImageError

    def bad(p: Path) -> str | None:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018  (the header is read)
            return None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"

    with ThreadPoolExecutor(threads) as pool:
        for p, why in zip(paths, pool.map(bad, paths, chunksize=256)):
            if why:
                raise DataError(
                    f"{p}: not a readable image ({why})", hint="remove or replace that file"
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


class StreamedImages:
    """An image folder's files and class indices, decoded as they are read:
    a row source of ``pipeline.Streamed``. Rows are file indices until
    :meth:`structure` decodes them."""

    streamed = True

    def __init__(self, files: list[Path], y: np.ndarray, shape: list[int], source: str):
        self.files, self.y, self.shape, self.source = (
            list(files),
            np.asarray(y, np.int32),
            list(shape),
            source,
        )
        self._stats = None

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx: np.ndarray, source: str | None = None) -> "StreamedImages":
        return StreamedImages(
            [self.files[i] for i in idx], self.y[idx], self.shape, source or self.source
        )

    def structure(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(idx, np.int64)
        return decode_many([self.files[i] for i in idx], self.shape), self.y[idx]

    def worker_rows(
        self, key: list[int], start: int, stop: int, i: int, W: int, chunk: int, shuffle: bool
    ):
        """File indices at epoch positions start <= p < stop with p % W == i."""
        order = (
            np.random.default_rng(key).permutation(len(self.files))
            if shuffle
            else np.arange(len(self.files))
        )
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            yield order[a + ((i - a) % W) : b : W]

    def batches(self, size: int):
        for a in range(0, len(self.files), size):
            yield self.structure(np.arange(a, min(a + size, len(self.files))))

    def numeric_stats(self):
        """Pixel statistics (data.normalize), in one decoding pass."""
        from bigmodel_cli.features.number import ColumnStats

        if self._stats is None:
            stats = None
            for x, _ in self.batches(1024):
                part = ColumnStats.of(x)
                stats = part if stats is None else stats.merge(part)
                stats.median = np.zeros(
                    x.shape[1]
                )  # a decoded image has no gaps: nothing is imputed
            self._stats = stats
        return self._stats

    def target_stats(self):
        return None

    def take(self, idx: np.ndarray):
        from bigmodel_cli.data.sources import Split

        x, y = self.structure(np.asarray(idx))
        return Split(x, y, self.source)


def folder_frame(folder: ImageFolder, shape: list[int] | None, target: str, role: str):
    """An image folder as a table: pixel columns, the class in ``target``, and ``path``."""
    import pandas as pd

    shape = need_shape(folder.root, shape, role)
    x = decode(folder.files, shape)
    df = pd.DataFrame(x, columns=pixel_names(shape))
    df[target] = folder.labels
    df["path"] = [str(p) for p in folder.files]
    df.attrs["source"] = str(folder.root)
    df.attrs["line_offset"] = 1
    df.attrs["image_paths"] = True
    return df


def expand(inputs: Iterable[str]) -> list[Path]:
    """Image files named by --input: files, folders (searched below) or globs."""
    import glob

    out: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_image(f))
        elif any(ch in spec for ch in "*?["):
            out += sorted(Path(f) for f in glob.glob(spec, recursive=True) if is_image(Path(f)))
        elif p.is_file() and is_image(p):
            out.append(p)
    return out
