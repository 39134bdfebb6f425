"""Strategy selection for every input, without GPUs."""

import json

import pytest

from bigmodel_cli.training.strategy import per_replica_batch, plan
from bigmodel_cli.errors import EnvironmentProblem

TWO = json.dumps({"cluster": {"worker": ["h1:1", "h2:1"]}, "task": {"type": "worker", "index": 1}})
ONE = json.dumps({"cluster": {"worker": ["h1:1"]}, "task": {"type": "worker", "index": 0}})
GPUS = ["/physical_device:GPU:0", "/physical_device:GPU:1", "/physical_device:GPU:2"]


@pytest.mark.parametrize(
    "distribute,gpus,env,devices,kind,devs",
    [
        ("auto", [], {}, None, "one_device", ["/cpu:0"]),
        ("auto", GPUS[:1], {}, None, "one_device", ["/gpu:0"]),
        ("auto", GPUS, {}, None, "mirrored", ["/gpu:0", "/gpu:1", "/gpu:2"]),
        ("auto", GPUS, {}, [0, 2], "mirrored", ["/gpu:0", "/gpu:2"]),
        ("auto", GPUS, {}, [1], "one_device", ["/gpu:1"]),
        ("auto", [], {"TF_CONFIG": TWO}, None, "multi_worker", ["/cpu:0"]),
        ("auto", [], {"TF_CONFIG": ONE}, None, "one_device", ["/cpu:0"]),
        (
            "auto",
            [],
            {
                "SLURM_JOB_ID": "7",
                "SLURM_STEP_ID": "0",
                "SLURM_STEP_NUM_TASKS": "4",
                "SLURM_STEP_NODELIST": "n[1-2]",
                "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
                "SLURM_PROCID": "2",
            },
            None,
            "multi_worker",
            ["/cpu:0"],
        ),
        # the batch script itself (sbatch -n4, no srun): one process, whatever --ntasks says
        (
            "auto",
            [],
            {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"},
            None,
            "one_device",
            ["/cpu:0"],
        ),
        ("cpu", GPUS, {}, None, "one_device", ["/cpu:0"]),
        ("gpu", GPUS, {}, None, "one_device", ["/gpu:0"]),
        ("mirrored", GPUS[:2], {}, None, "mirrored", ["/gpu:0", "/gpu:1"]),
        ("multi_worker", [], {"TF_CONFIG": TWO}, None, "multi_worker", ["/cpu:0"]),
    ],
)
def test_plan(distribute, gpus, env, devices, kind, devs):
    p = plan(distribute, gpus, env, devices)
    assert (p.kind, p.devices) == (kind, devs)


def test_chief_and_workers():
    assert not plan("auto", [], {"TF_CONFIG": TWO}).is_chief  # index 1
    chief = json.dumps(
        {"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "chief", "index": 0}}
    )
    p = plan("auto", [], {"TF_CONFIG": chief})
    assert p.workers == 2 and p.is_chief
    assert plan(
        "auto",
        [],
        {
            "SLURM_JOB_ID": "1",
            "SLURM_STEP_ID": "0",
            "SLURM_STEP_NUM_TASKS": "2",
            "SLURM_STEP_NODELIST": "vm",
            "SLURM_STEP_TASKS_PER_NODE": "2",
            "SLURM_PROCID": "0",
        },
    ).is_chief


@pytest.mark.parametrize(
    "distribute,gpus,env,devices,words",
    [
        ("gpu", [], {}, None, ["no GPU", "0 GPU"]),
        ("mirrored", [], {}, None, ["no GPU"]),
        ("auto", GPUS[:1], {}, [3], ["GPU 3", "1 GPU", "0..0"]),
        ("multi_worker", [], {}, None, ["TF_CONFIG", "srun", "--workers"]),
        ("auto", [], {"TF_CONFIG": "{oops"}, None, ["not valid JSON"]),
        (
            "auto",
            [],
            {
                "TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                '"index": 5}}'
            },
            None,
            ["worker:5", "not in the cluster"],
        ),
    ],
)
def test_plan_errors(distribute, gpus, env, devices, words):
    with pytest.raises(EnvironmentProblem) as e:
        plan(distribute, gpus, env, devices)
    text = str(e.value) + (e.value.hint or "")
    for w in words:
        assert w in text


def test_per_replica_batch():
    assert per_replica_batch(64, 4) == 16
    with pytest.raises(EnvironmentProblem) as e:
        per_replica_batch(30, 4)
    assert "split evenly over 4" in str(e.value) and "multiple of 4" in e.value.hint


def test_describe_peer_names_the_cluster_member():
    from bigmodel_cli.training.strategy import Plan
    from bigmodel_cli.training.peers import describe_peer

    p = Plan(
        "multi_worker",
        ["/cpu:0"],
        "x",
        2,
        "worker",
        0,
        {"worker": ["127.0.0.1:5739", "127.0.0.1:57395"]},
    )
    grpc = (
        'grpc_status:14, grpc_message:"last error: UNKNOWN: ipv4:127.0.0.1:57395: Failed to '
        'connect to remote host"'
    )
    assert describe_peer(p, grpc) == "worker 1 (127.0.0.1:57395)"
    heartbeat = (
        "Error reported from /job:worker/task:1: The following tasks are unhealthy (stopped "
        "sending heartbeats):\n/job:worker/replica:0/task:1"
    )
    assert describe_peer(p, heartbeat) == "worker 1 (127.0.0.1:57395)"
    assert describe_peer(p, "/job:worker/replica:0/task:0 only names me") == "another worker"
    assert describe_peer(p, "no address") == "another worker"


class FakeTF:
    """Just enough of tf.config to test device visibility without GPUs."""

    def __init__(self, started: bool = False):
        self.visible = None
        self.started = started
        self.config = self

    def list_physical_devices(self, kind):
        return ["GPU:0", "GPU:1", "GPU:2"]

    def set_visible_devices(self, devices, kind):
        if self.started:
            raise RuntimeError("Visible devices cannot be modified after being initialized")
        self.visible = devices


def test_restrict_gpus_sets_visibility_and_renames():
    from bigmodel_cli.training.strategy import restrict_gpus

    tf = FakeTF()
    assert restrict_gpus(tf, ["/gpu:0", "/gpu:2"]) == ["/gpu:0", "/gpu:1"] and tf.visible == [
        "GPU:0",
        "GPU:2",
    ]
    assert restrict_gpus(FakeTF(started=True), ["/gpu:2"]) == ["/gpu:2"]  # too late: physical names
    assert restrict_gpus(FakeTF(), ["/cpu:0"]) == ["/cpu:0"]


@pytest.mark.parametrize(
    "setting,gpus,devices,flags,caps,policy",
    [
        ("auto", [], None, {"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),
        ("auto", [], None, {"amx_bf16", "amx_tile"}, [], "mixed_bfloat16"),
        ("auto", [], None, {"avx2", "avx512f"}, [], "float32"),
        ("auto", GPUS[:1], None, set(), ["8.0"], "mixed_bfloat16"),
        ("auto", GPUS[:1], None, {"avx512_bf16"}, ["7.5"], "mixed_float16"),
        ("auto", GPUS[:1], None, set(), ["6.1"], "float32"),
        (
            "auto",
            GPUS,
            None,
            set(),
            ["9.0", "7.0", "8.6"],
            "mixed_float16",
        ),  # the slowest device decides
        (
            "auto",
            GPUS,
            [0, 2],
            set(),
            ["9.0", "7.0", "8.6"],
            "mixed_bfloat16",
        ),  # only the GPUs in use
        ("auto", GPUS[:1], None, set(), [None], "float32"),  # capability unknown: play safe
        ("float32", GPUS[:1], None, {"avx512_bf16"}, ["9.0"], "float32"),
        ("mixed_float16", [], None, set(), [], "mixed_float16"),
    ],
)
def test_precision_per_device(setting, gpus, devices, flags, caps, policy):
    from bigmodel_cli.training.strategy import choose_precision

    p = plan("auto", gpus, {}, devices)
    chosen, why = choose_precision(setting, p.devices, flags, caps)
    assert chosen == policy and why


def test_float32_copy_of_a_mixed_model_predicts_the_same():
    import keras
    import numpy as np

    from bigmodel_cli.config.experiment import ExperimentConfig
    from bigmodel_cli.model.builders import build_model, float32_copy

    cfg = ExperimentConfig.model_validate(
        {
            "name": "m",
            "task": "classification",
            "data": {"train": "x.csv", "target": "y", "normalize": True},
            "model": {
                "layers": [
                    {"Dense": {"units": 16, "activation": "relu"}},
                    {"Dense": {"units": 3, "activation": "softmax"}},
                ]
            },
        }
    )
    x = np.random.default_rng(0).normal(size=(50, 4)).astype("float32") * 1000 + 5000
    model = build_model(cfg, 4, ["a", "b", "c"], None, x, None, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    assert (
        policies["normalize"] == "float32"
        and list(policies.values())[-1] == "float32"
        and "mixed_bfloat16" in policies.values()
    )
    assert model(x).dtype == "float32"
    plain = float32_copy(model)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    np.testing.assert_allclose(
        plain(x), model(x), atol=2e-2
    )  # bfloat16 keeps ~3 digits in the hidden layer


def test_info_shows_each_gpu_with_capability_and_memory():
    import io

    from rich.console import Console

    from bigmodel_cli.ui.tables import info_table

    buf = io.StringIO()
    info_table(
        {
            "cpu_bfloat16": None,
            "gpus": [
                {
                    "device": "/physical_device:GPU:0",
                    "name": "NVIDIA H100 80GB HBM3",
                    "compute_capability": "9.0",
                    "memory_mb": 81559,
                }
            ],
            "auto_strategy": {
                "kind": "one_device",
                "devices": ["/gpu:0"],
                "reason": "auto: one GPU",
                "precision": "mixed_bfloat16",
                "precision_reason": "auto: GPU compute capability 9.0",
            },
        },
        Console(file=buf, width=200),
    )
    out = buf.getvalue()
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0, 81,559 MB" in out
    assert (
        "precision mixed_bfloat16 (auto: GPU compute capability 9.0)" in out
        and "no AMX or avx512_bf16" in out
    )


@pytest.mark.parametrize("devices,split", [(["/cpu:0"], True), (["/gpu:0"], False)])
def test_info_says_which_models_get_bfloat16_on_a_cpu(monkeypatch, devices, split):
    """On a CPU with bfloat16, auto keeps it for big models only (refine_precision): info
    says both, so a table run's float32 is no surprise; on a GPU, one precision for all."""
    import io

    from rich.console import Console

    from bigmodel_cli.commands import info as info_cmd
    from bigmodel_cli.training import strategy as distribute
    from bigmodel_cli.ui.tables import info_table

    def plan(*a, **k):
        return distribute.Plan("one_device", devices, "test")

    def bf16(p, setting):
        p.precision, p.precision_reason = "mixed_bfloat16", "test: bfloat16 here"
        return p

    monkeypatch.setattr(distribute, "plan", plan)
    monkeypatch.setattr(distribute, "set_precision", bf16)
    doc = info_cmd.info()
    by = doc["auto_strategy"].get("precision_by_model")
    assert (
        (
            by
            == {
                "at_least_macs": distribute.BF16_CPU_MIN_MACS,
                "big": "mixed_bfloat16",
                "small": "float32",
            }
        )
        if split
        else by is None
    )
    buf = io.StringIO()
    info_table(doc, Console(file=buf, width=300))
    out = buf.getvalue()
    assert ("float32 below" in out) == split and "mixed_bfloat16" in out


@pytest.mark.parametrize(
    "setting,chosen,devices,macs,policy",
    [
        (
            "auto",
            "mixed_bfloat16",
            ["/cpu:0"],
            220,
            "float32",
        ),  # the regression MLP: bf16 is slower there
        ("auto", "mixed_bfloat16", ["/cpu:0"], 2_794_240, "mixed_bfloat16"),  # mnist-cnn
        (
            "auto",
            "mixed_bfloat16",
            ["/gpu:0"],
            220,
            "mixed_bfloat16",
        ),  # GPUs: the capability decides alone
        ("mixed_bfloat16", "mixed_bfloat16", ["/cpu:0"], 220, "mixed_bfloat16"),  # asked for: kept
        ("auto", "float32", ["/cpu:0"], 10**9, "float32"),  # no bf16 CPU: nothing to refine
    ],
)
def test_auto_precision_looks_at_the_model_on_a_cpu(setting, chosen, devices, macs, policy):
    from bigmodel_cli.training.strategy import refine_precision

    got, why = refine_precision(setting, chosen, "auto: the CPU has avx512_bf16", devices, macs)
    assert got == policy and why
    if got != chosen:
        assert f"{macs:,} multiply-adds" in why


def test_macs_per_sample_counts_dense_and_convolutions():
    from bigmodel_cli.config.experiment import ExperimentConfig
    from bigmodel_cli.model.builders import build_model, macs_per_sample

    mlp = ExperimentConfig.model_validate(
        {
            "name": "m",
            "task": "regression",
            "data": {"train": "x.csv", "target": "y"},
            "model": {
                "layers": [{"Dense": {"units": 20, "activation": "relu"}}, {"Dense": {"units": 1}}]
            },
        }
    )
    assert macs_per_sample(build_model(mlp, 10, None, None)) == 10 * 20 + 20 * 1
    cnn = ExperimentConfig.model_validate(
        {
            "name": "c",
            "task": "classification",
            "data": {"train": "x.csv", "target": "y", "image_shape": [28, 28, 1]},
            "model": {"architecture": "mnist_cnn"},
        }
    )
    # conv 26x26x(3x3x1x32) + 11x11x(3x3x32x64) + 3x3x(3x3x64x64) + dense 576x64 + 64x10
    want = 26 * 26 * 288 + 11 * 11 * 18432 + 3 * 3 * 36864 + 576 * 64 + 640
    assert macs_per_sample(build_model(cnn, 784, list(range(10)), None)) == want
