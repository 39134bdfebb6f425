"""Image folders: one subfolder per class of PNG/JPEG files (the ImageFolder layout).

An image is decoded, checked and laid out as pixel columns by its type,
:data:`bigmodel_cli.features.image.IMAGE`; this module finds the files (a folder of
class subfolders, ``predict --input``'s files, folders and globs) and streams them.
So the same experiment trains on ``data/train.csv`` or on
``data/train/<class>/*.png`` with only the path changed. Unless ``data.stream:
false`` they are decoded as training goes (:class:`StreamedImages`, in a few
threads), so memory does not grow with the number of images; the order is the
in-memory order, ``rng([seed, epoch])``.

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
from bigmodel_cli.features.image import decode, decode_many, is_image


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
