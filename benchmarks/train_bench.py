"""Training speed: bigmodel vs the documents' plain Keras script, same run.

Both train the mnist-cnn architecture (batch 32, adam, 5 epochs) on the
template's 8,000 shipped digits (7,200 trained, 800 held out, the same rows
for both), each in a fresh process. Reported: steady-state samples/s (median
of epochs 2..N, so tracing is not counted), the ratio, and test accuracy on
the 2,000 other digits.

    python benchmarks/train_bench.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, train_template  # noqa: E402

PLAIN = r'''
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, pandas as pd, keras
from keras import layers
root, epochs = sys.argv[1], int(sys.argv[2])
df = pd.read_csv(f"{root}/templates/mnist-cnn/data/train.csv")
y = df.pop("label").to_numpy(); x = (df.to_numpy("float32") / 255.0).reshape(-1, 28, 28, 1)
order = np.random.default_rng(42).permutation(len(y)); n_val = int(round(len(y) * 0.1))
tr = np.sort(order[n_val:]); x, y = x[tr], y[tr]               # the same 7,200 rows bigmodel trains on
te = pd.read_csv(f"{root}/templates/mnist-cnn/data/test.csv")
yt = te.pop("label").to_numpy(); xt = (te.to_numpy("float32") / 255.0).reshape(-1, 28, 28, 1)
keras.utils.set_random_seed(42)
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[T()])
acc = model.evaluate(xt, yt, verbose=0)[1]
print(json.dumps({"samples_per_s": [len(y) / t for t in times], "test_accuracy": acc}))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([sys.executable, "-c", PLAIN, str(ROOT), str(args.epochs)], capture_output=True, text=True, env=env, check=True)
    plain = json.loads(p.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        _, ours = train_template("mnist-cnn", Path(tmp) / "exp", [f"train.epochs={args.epochs}"], env)

    a, b = median(plain["samples_per_s"][1:]), median(ours["samples_per_s"][1:])
    report = {
        "machine": machine(),
        "plain_keras_samples_per_s": round(a, 1),
        "bigmodel_samples_per_s": round(b, 1),
        "ratio_bigmodel_over_plain": round(b / a, 3),
        "plain_test_accuracy": round(plain["test_accuracy"], 4),
        "bigmodel_test_accuracy": round(ours["test_accuracy"], 4),
        "target": "ratio >= 1.0",
        "met": b >= a,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
