"""Strategy selection, device setup and batch scaling.

:func:`plan` is pure (environment and device list in, decision out) so every
case is unit-tested without GPUs; :func:`make_strategy` turns a plan into a
``tf.distribute`` strategy. ``train.batch_size`` is always the global batch.

Example::

    p = plan("auto", gpus=["GPU:0", "GPU:1"], env={})
    p.kind  # 'mirrored'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from bigmodel_cli.errors import EnvironmentProblem
from bigmodel_cli.training import cluster

# distribute.import_tensorflow: one name for callers here
from bigmodel_cli.runtime import import_tensorflow, quiet_tensorflow  # noqa: F401


@dataclass
class Plan:
    kind: str  # one_device | mirrored | multi_worker
    devices: list[str]
    reason: str
    workers: int = 1
    task_type: str | None = None
    task_index: int = 0
    cluster: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # TF_CONFIG | slurm | sagemaker | jobset (cluster.resolve)
    precision: str = "float32"  # the Keras dtype policy training uses (choose_precision)
    precision_reason: str = ""

    @property
    def is_chief(self) -> bool:
        if self.kind != "multi_worker":
            return True
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type in ("worker", None) and self.task_index == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    distribute: str,
    gpus: list[str],
    env: Mapping[str, str],
    devices: list[int] | None = None,
    read: Callable[[str], str | None] | None = None,
) -> Plan:
    """Decide the strategy. ``gpus`` are the physical GPUs TensorFlow sees; the
    job's other workers come from :func:`cluster.resolve` (TF_CONFIG, SageMaker,
    JobSet or a Slurm step)."""
    job = cluster.resolve(env, read)
    n_cluster = job.size if job else 0
    if devices is not None:
        bad = [d for d in devices if not (0 <= d < len(gpus))]
        if bad:
            raise EnvironmentProblem(
                f"train.devices asks for GPU {bad[0]} but this machine has {len(gpus)} GPU(s)"
                + (f": {', '.join(gpus)}" if gpus else ""),
                hint=f"use indices 0..{len(gpus) - 1}"
                if gpus
                else "drop --devices (train.devices) to train on the CPU",
            )
    chosen = [gpus[d] for d in devices] if devices is not None else list(gpus)

    if distribute == "auto":
        if n_cluster > 1:
            distribute = "multi_worker"
        elif len(chosen) > 1:
            distribute = "mirrored"
        else:
            return Plan(
                "one_device",
                [_gpu_device(chosen[0]) if chosen else "/cpu:0"],
                "auto: one GPU" if chosen else "auto: no GPU, one CPU device",
            )
    if distribute == "cpu":
        return Plan("one_device", ["/cpu:0"], "train.distribute: cpu")
    if distribute == "gpu":
        if not chosen:
            raise EnvironmentProblem(
                "train.distribute is 'gpu' but TensorFlow sees no GPU on this machine",
                hint=_have(gpus) + "; use train.distribute: auto or cpu",
            )
        return Plan("one_device", [_gpu_device(chosen[0])], "train.distribute: gpu")
    if distribute == "mirrored":
        if not chosen:
            raise EnvironmentProblem(
                "train.distribute is 'mirrored' but TensorFlow sees no GPU on this machine",
                hint=_have(gpus) + "; use train.distribute: auto or cpu",
            )
        return Plan(
            "mirrored", [_gpu_device(g) for g in chosen], f"mirrored over {len(chosen)} GPU(s)"
        )
    if distribute == "multi_worker":
        if job is None:
            raise EnvironmentProblem(
                "train.distribute is 'multi_worker' but nothing describes a cluster "
                "(TF_CONFIG, a Slurm srun step, SageMaker or JobSet)",
                hint="set TF_CONFIG on every worker, run under srun, or try locally with "
                "--workers 2",
            )
        mine = (
            chosen
            if devices is not None
            else cluster.gpu_share(chosen, job.local_index, job.local_tasks, job.node_gpus)
        )
        words = {
            "TF_CONFIG": "TF_CONFIG",
            "slurm": "Slurm step",
            "sagemaker": "SageMaker job",
            "jobset": "JobSet",
        }[job.source]
        return Plan(
            "multi_worker",
            [_gpu_device(g) for g in mine] or ["/cpu:0"],
            f"multi_worker: {words} with {n_cluster} workers",
            workers=n_cluster,
            task_type=job.task_type,
            task_index=job.task_index,
            cluster=job.cluster,
            source=job.source,
        )
    raise EnvironmentProblem(f"unknown train.distribute '{distribute}'")


def _gpu_device(name: str) -> str:
    # "/physical_device:GPU:1" or "GPU:1" -> "/gpu:1"
    return "/gpu:" + name.rsplit(":", 1)[-1]


def _have(gpus: list[str]) -> str:
    return f"this machine has {len(gpus)} GPU(s)" + (f": {', '.join(gpus)}" if gpus else "")


def visible_gpus() -> list[str]:
    tf = import_tensorflow()

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (RuntimeError, ValueError):
            pass  # already initialised
    return [g.name for g in gpus]


def restrict_gpus(tf, devices: list[str]) -> list[str]:
    """Make only the chosen GPUs visible (before the runtime starts), so the
    others are never initialised; returns the logical names to use. If the
    runtime has already started, the physical names are used as they are."""
    wanted = [int(d.rsplit(":", 1)[1]) for d in devices if d.startswith("/gpu:")]
    if not wanted:
        return devices
    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([gpus[i] for i in wanted], "GPU")
    except RuntimeError:
        return devices
    return [f"/gpu:{k}" for k in range(len(wanted))]


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_details(tf=None) -> list[dict[str, Any]]:
    """Name, compute capability and memory of each GPU TensorFlow sees."""
    tf = tf or import_tensorflow()
    out = []
    memory = _nvidia_memory()
    for i, g in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            d = tf.config.experimental.get_device_details(g)
        except (RuntimeError, ValueError):
            d = {}
        cc = d.get("compute_capability")
        out.append(
            {
                "device": g.name,
                "name": d.get("device_name", g.name),
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "memory_mb": memory[i] if i < len(memory) else None,
            }
        )
    return out


def _nvidia_memory() -> list[int]:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return [int(v) for v in r.stdout.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return []


def choose_precision(
    setting: str, devices: list[str], flags: set[str], capabilities: list[str | None]
) -> tuple[str, str]:
    """(Keras dtype policy, why) for the plan's devices. Pure: the CPU flags and
    the GPUs' compute capabilities ("8.0") come in, so every case is tested.

    auto: bfloat16 on CPUs with AMX or avx512_bf16 and on GPUs of compute
    capability 8.0 or more; float16 (with loss scaling) on 7.x GPUs; else float32."""
    if setting != "auto":
        return setting, f"train.precision: {setting}"
    gpus = [d for d in devices if "gpu" in d.lower()]
    if gpus:
        caps = []
        for d in gpus:
            i = int(d.rsplit(":", 1)[1]) if d.rsplit(":", 1)[-1].isdigit() else 0
            c = capabilities[i] if i < len(capabilities) else None
            caps.append(tuple(int(v) for v in c.split(".")) if c else (0, 0))
        low = min(caps)
        shown = ", ".join(f"{a}.{b}" for a, b in caps)
        if low >= (8, 0):
            return "mixed_bfloat16", f"auto: GPU compute capability {shown}"
        if low >= (7, 0):
            return "mixed_float16", f"auto: GPU compute capability {shown} (no fast bfloat16)"
        return "float32", f"auto: GPU compute capability {shown or 'unknown'}"
    fast = [f for f in BF16_CPU_FLAGS if f in flags]
    if fast:
        return "mixed_bfloat16", f"auto: the CPU has {fast[0]}"
    return "float32", "auto: no AMX or avx512_bf16 on this CPU"


# Below this many multiply-adds a sample, bfloat16 on a CPU costs more in casts
# than it saves (2 cores, avx512_bf16, MNIST-sized inputs, steady samples/s
# bf16 vs float32): 220 (regression MLP) 0.85x; 50k (784-64-10) 0.9-1.04x;
# 270k (784-256-256-10) 1.0x; 1.85M (784-1024-1024-10) 1.35x; 2.8M (mnist-cnn) 1.5x.
BF16_CPU_MIN_MACS = 500_000


def refine_precision(
    setting: str, chosen: str, reason: str, devices: list[str], macs: int
) -> tuple[str, str]:
    """``auto``'s second look, once the model is built: on a CPU, bfloat16 only
    for models with at least BF16_CPU_MIN_MACS multiply-adds a sample. Pure."""
    if setting != "auto" or chosen != "mixed_bfloat16" or any("gpu" in d.lower() for d in devices):
        return chosen, reason
    if macs >= BF16_CPU_MIN_MACS:
        return chosen, f"{reason}; {macs:,} multiply-adds a sample"
    return (
        "float32",
        f"auto: {macs:,} multiply-adds a sample, too few for bfloat16 to pay on this CPU "
        f"(it needs {BF16_CPU_MIN_MACS:,})",
    )


def set_precision(p: Plan, setting: str) -> Plan:
    """Fill in the plan's precision for its devices (:func:`choose_precision`)."""
    uses_gpu = any("gpu" in d.lower() for d in p.devices)
    caps = [g["compute_capability"] for g in gpu_details()] if uses_gpu else []
    p.precision, p.precision_reason = choose_precision(setting, p.devices, cpu_flags(), caps)
    return p


def make_strategy(p: Plan):
    import tensorflow as tf

    devices = restrict_gpus(tf, p.devices)
    if p.kind == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    if p.kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    # Our own resolver's cluster, for every platform: TensorFlow's SlurmClusterResolver
    # runs nvidia-smi on a node without GPUs and dies (FileNotFoundError).
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(p.cluster),
        task_type=p.task_type,
        task_id=p.task_index,
        rpc_layer="grpc",
    )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=None)
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options
    )


def pipeline_batches(global_batch: int, pipelines: int, local_replicas: int = 1) -> list[int]:
    """Per-replica batch of each input pipeline (one pipeline per worker).

    Pipeline i takes the positions j of every global batch with j % pipelines
    == i, so a global batch of 32 over 3 workers is 11/11/10 rows and still
    holds exactly the rows one process would use. A pipeline's share must
    split evenly over its local replicas (several GPUs in one process)."""
    shares = [len(range(i, global_batch, pipelines)) for i in range(pipelines)]
    if any(s % local_replicas for s in shares):
        replicas = pipelines * local_replicas
        raise EnvironmentProblem(
            f"train.batch_size {global_batch} does not split evenly over {replicas} "
            f"replicas ({local_replicas} per worker)",
            hint=f"use a multiple of {replicas}, e.g. "
            f"{global_batch - global_batch % replicas or replicas}",
        )
    return [s // local_replicas for s in shares]


def per_replica_batch(global_batch: int, replicas: int) -> int:
    """The per-replica batch when every replica is fed by one pipeline (one process)."""
    return pipeline_batches(global_batch, 1, replicas)[0]
