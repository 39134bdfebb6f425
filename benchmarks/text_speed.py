"""Text: bigmodel's text-classifier template vs a plain Keras TextVectorization script.

Both learn the template's Chinese reviews (the same 12,501 training rows, 5
epochs, batch and learning rate of the template) as a character-bigram bag:
the plain script with ``TextVectorization(split="character", ngrams=2)``,
Embedding(32), mean, softmax and ``model.fit``. Each runs in a fresh
process. Reported, from the same run:

- steady-state training samples/s (median of epochs 2..N) and test accuracy;
- whole-process predict rows/s on an N-row CSV (the test set repeated):
  the plain script reads it with pandas and calls ``model.predict`` on the
  strings; bigmodel runs ``bigmodel predict``.

    python benchmarks/text_speed.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine, median, train_template  # noqa: E402

DATA = ROOT / "templates" / "text-classifier" / "data"
EPOCHS = (
    5  # both, every epoch (the template's 100 is an upper bound that early stopping ends at 5 here)
)

PLAIN_TRAIN = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, pandas as pd, keras, tensorflow as tf
from keras import layers
data, out = sys.argv[1], sys.argv[5]
epochs, batch, lr = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
df = pd.read_csv(f"{data}/train.csv.gz")
order = np.random.default_rng(42).permutation(len(df)); n_val = int(round(len(df) * 0.1))
df = df.iloc[np.sort(order[n_val:])]                 # the rows bigmodel trains on
classes = sorted(df.label.unique())
index = {c: i for i, c in enumerate(classes)}
y = df.label.map(index).to_numpy()
te = pd.read_csv(f"{data}/test.csv.gz")
yt = te.label.map(index).to_numpy()
keras.utils.set_random_seed(42)
vec = layers.TextVectorization(max_tokens=200_000, split="character", ngrams=2, output_mode="int")
vec.adapt(tf.constant(df.text.to_numpy(str)))
inp = keras.Input((), dtype="string")
ids = vec(inp)
# no mask_zero: a text with no token would average to NaN
emb = layers.Embedding(vec.vocabulary_size(), 32)(ids)
out_ = layers.Dense(len(classes), activation="softmax")(layers.GlobalAveragePooling1D()(emb))
model = keras.Model(inp, out_)
model.compile(
    keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
x = tf.constant(df.text.to_numpy(str))
model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, callbacks=[T()], shuffle=True)
acc = model.evaluate(tf.constant(te.text.to_numpy(str)), yt, verbose=0)[1]
model.save(out)
rates = [len(y) / t for t in times]
print(json.dumps({"samples_per_s": rates, "test_accuracy": acc, "classes": classes}))
"""

PLAIN_PREDICT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import pandas as pd, keras, tensorflow as tf
model = keras.models.load_model(sys.argv[1])
df = pd.read_csv(sys.argv[2])
p = model.predict(tf.constant(df.text.fillna("").to_numpy(str)), verbose=0)
pd.DataFrame({"prediction": p.argmax(1)}).to_csv(sys.argv[3], index=False)
"""


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    import pandas as pd
    import yaml

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the predict file")
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cfg = yaml.safe_load((ROOT / "templates" / "text-classifier" / "experiment.yaml").read_text())[
        "train"
    ]
    bm = BIGMODEL
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                PLAIN_TRAIN,
                str(DATA),
                str(EPOCHS),
                str(cfg["batch_size"]),
                str(cfg["learning_rate"]),
                str(tmp / "plain.keras"),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        plain = json.loads(p.stdout.strip().splitlines()[-1])

        # Every epoch runs (no early stop) so both train the same number of epochs.
        doc, ours = train_template(
            "text-classifier",
            tmp / "exp",
            ["train.early_stopping=null", f"train.epochs={EPOCHS}"],
            env,
        )

        test = pd.read_csv(DATA / "test.csv.gz")
        big = pd.concat([test] * (args.rows // len(test) + 1)).head(args.rows)
        src = tmp / "big.csv"
        big.to_csv(src, index=False)
        t_plain = timed(
            [
                sys.executable,
                "-c",
                PLAIN_PREDICT,
                str(tmp / "plain.keras"),
                str(src),
                str(tmp / "plain_out.csv"),
            ],
            env,
        )
        t_ours = timed(
            [
                *bm,
                "predict",
                doc["run_dir"],
                "--input",
                str(src),
                "--output",
                str(tmp / "ours.csv"),
            ],
            env,
        )
        agree = float(
            (
                pd.read_csv(tmp / "ours.csv")["prediction"].head(len(test)).to_numpy()
                == test.label.to_numpy()
            ).mean()
        )

    a, b = median(plain["samples_per_s"][1:]), median(ours["samples_per_s"][1:])
    report = {
        "machine": machine(),
        "train_plain_samples_per_s": round(a, 1),
        "train_bigmodel_samples_per_s": round(b, 1),
        "train_ratio": round(b / a, 3),
        "plain_test_accuracy": round(plain["test_accuracy"], 4),
        "bigmodel_test_accuracy": round(ours["test_accuracy"], 4),
        "predict_rows": args.rows,
        "predict_plain_rows_per_s": round(args.rows / t_plain, 1),
        "predict_bigmodel_rows_per_s": round(args.rows / t_ours, 1),
        "predict_ratio": round(t_plain / t_ours, 3),
        "bigmodel_predict_accuracy_first_copy": round(agree, 4),
        "target": "train_ratio >= 1.0 and predict_ratio >= 1.0",
        "met": b >= a and t_ours <= t_plain,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
