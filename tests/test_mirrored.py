"""MirroredStrategy with two replicas, run for real on two logical CPU devices:
it must train the same model as one device, in float32 and in mixed bfloat16."""

import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from bigmodel_cli.data import tables as data
from bigmodel_cli.data.load import load_datasets
from bigmodel_cli.training import strategy as distribute
from bigmodel_cli.training import trainer as train
from bigmodel_cli.config.load import load_experiment
from bigmodel_cli.runs import create_run
import keras

exp, precisions = Path(sys.argv[1]), sys.argv[2:]
diffs = {}
for precision in precisions:
  sets = ["data.validation=null", "train.batch_size=6", "train.epochs=2"]
  sets.append(f"train.precision={precision}")
  weights = {}
  for kind, devices in (("one_device", ["/cpu:0"]), ("mirrored", ["/cpu:0", "/cpu:1"])):
    cfg, base = load_experiment(exp, sets)
    ds = load_datasets(cfg, base)
    plan = distribute.Plan(kind, devices, "test: logical CPUs")
    plan = distribute.set_precision(plan, cfg.train.precision)
    r = train.fit(cfg, base, create_run(base, cfg.name), ds, None, strategy_plan=plan)
    assert r.strategy["replicas"] == len(devices), r.strategy
    m = keras.models.load_model(r.model_path, compile=False)
    weights[kind] = [np.asarray(w) for w in m.get_weights()]
    s = r.strategy
    print(kind, s["strategy"], s["replicas"], s["per_replica_batch"], file=sys.stderr)
    print(plan.precision, file=sys.stderr)
    print(r.history[-1]["loss"], file=sys.stderr)
  one, mirrored = weights["one_device"], weights["mirrored"]
  assert len(one) == len(mirrored) > 0
  diffs[precision] = max(float(np.max(np.abs(a - b))) for a, b in zip(one, mirrored))
print(json.dumps(diffs))
"""


# float32: 1e-4. Mixed precision computes each replica's weight gradients in 16 bits:
# a replica's partial sum over its half of the batch is rounded to 16 bits before the
# float32 all-reduce, where one device rounds the sum over the whole batch once.
# bfloat16 keeps 8 bits of mantissa (2**-8 = 0.4% per rounding), float16 11 bits.
TOLERANCE = {
    "float32": 1e-4,
    "mixed_bfloat16": 1e-2,
    "mixed_float16": 1e-4,
}  # measured: 6e-8, 2.9e-3, 1.9e-5


def test_two_replicas_match_one_device(make_exp):
    """Every precision in one process (one TensorFlow start for the three)."""
    exp = make_exp("regression")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(exp), *TOLERANCE],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("MirroredStrategy 2 3") == 3  # two replicas of 3 rows each really ran
    diffs = json.loads(p.stdout.strip().splitlines()[-1])
    assert all(diffs[k] < tol for k, tol in TOLERANCE.items()), diffs
