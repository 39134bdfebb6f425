"""Who the other workers are: one resolver for every way a platform says it.

Each platform describes a multi-worker job in its own environment; :func:`resolve`
maps all of them to the same :class:`Cluster` (a TF_CONFIG-style cluster, this
task's type and index, and its place on its node), so the strategy, the chief's
run folder and the error messages never depend on where the job runs:

  TF_CONFIG   Kubernetes operators, Vertex AI, our own ``--workers``: a
              ``chief`` plus ``worker``s (or workers only); AI Platform's older
              ``master`` is the chief; extra keys (``environment``, ``job``,
              ``task.trial``) are ignored
  SageMaker   ``SM_HOSTS`` + ``SM_CURRENT_HOST``, or its
              ``/opt/ml/input/config/resourceconfig.json``: one worker a host
  JobSet      ``JOBSET_NAME`` + ``REPLICATED_JOB_NAME`` and the indices from the
              pod's annotations (``JOB_INDEX``, ``JOB_COMPLETION_INDEX``); hosts are
              JobSet's stable names ``<jobset>-<replicated job>-<job>-<pod>.<subdomain>``
  Slurm       an ``srun`` step (``SLURM_STEP_*``): one worker a task, tasks laid
              out on the step's nodes as Slurm placed them (block or cyclic)

Pure: the environment (and a file reader) in, a plan out, so every platform is
tested with exactly the variables it injects. No subprocess is started, and in
particular never ``nvidia-smi``, which TensorFlow's ``SlurmClusterResolver`` runs
on a node without GPUs and fails on (FileNotFoundError).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bigmodel_cli.errors import EnvironmentProblem

SAGEMAKER_RESOURCE_CONFIG = "/opt/ml/input/config/resourceconfig.json"
DEFAULT_PORT = 12345  # SageMaker and JobSet: the port every worker listens on (BIGMODEL_PORT)
SLURM_PORT_FIRST, SLURM_PORT_SLOTS, SLURM_PORT_SPAN = (
    12000,
    1500,
    32,
)  # one 32-port range a job step


@dataclass
class Cluster:
    cluster: dict[str, list[str]]  # {"chief": [...], "worker": [...]}: host:port each
    task_type: str
    task_index: int
    source: str  # TF_CONFIG | sagemaker | jobset | slurm
    local_index: int = 0  # this task's place among the tasks on its node
    local_tasks: int = 1  # tasks of the job on this node (they share its GPUs)
    node_gpus: int | None = None  # GPUs the job has on this node (SLURM_GPUS_ON_NODE), when said

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.cluster.values())


def resolve(
    env: Mapping[str, str], read: Callable[[str], str | None] | None = None
) -> Cluster | None:
    """The job this process belongs to, or None when nothing describes one."""
    read = read or _read_file
    if env.get("TF_CONFIG"):
        return from_tf_config(env["TF_CONFIG"])
    if env.get("SM_HOSTS") or env.get("SM_CURRENT_HOST"):
        return from_sagemaker(env.get("SM_HOSTS"), env.get("SM_CURRENT_HOST"), env, "SM_HOSTS")
    if env.get("SM_TRAINING_ENV") or env.get("TRAINING_JOB_NAME"):
        text = read(SAGEMAKER_RESOURCE_CONFIG)
        if text:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise EnvironmentProblem(
                    f"{SAGEMAKER_RESOURCE_CONFIG} is not valid JSON: {e.msg}"
                ) from None
            return from_sagemaker(
                json.dumps(doc.get("hosts")),
                doc.get("current_host"),
                env,
                SAGEMAKER_RESOURCE_CONFIG,
            )
    if env.get("JOBSET_NAME"):
        return from_jobset(env)
    if env.get("SLURM_STEP_ID") is not None and env.get("SLURM_JOB_ID"):
        return from_slurm(env)
    return None


def _read_file(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def from_tf_config(text: str) -> Cluster:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise EnvironmentProblem(
            f"TF_CONFIG is not valid JSON: {e.msg} at character {e.pos}",
            hint='e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": '
            '"worker", "index": 0}}',
        ) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict):
        raise EnvironmentProblem(
            "TF_CONFIG has no 'cluster' mapping",
            hint='TF_CONFIG needs {"cluster": {...}, "task": {"type": ..., "index": ...}}',
        )
    task = cfg.get("task") or {}
    if not isinstance(task, dict) or "type" not in task:
        raise EnvironmentProblem(
            "TF_CONFIG has no task type", hint='add "task": {"type": "worker", "index": N}'
        )
    rename = {"master": "chief"}  # AI Platform Training's name for the chief
    cluster: dict[str, list[str]] = {}
    for kind, members in cfg["cluster"].items():
        kind = rename.get(kind, kind)
        if kind in ("chief", "worker"):
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise EnvironmentProblem(
                    f"TF_CONFIG cluster '{kind}' is not a list of host:port strings: {members!r}"
                )
            cluster[kind] = list(members)
        elif kind == "ps" and members:
            raise EnvironmentProblem(
                "TF_CONFIG has parameter servers ('ps'): bigmodel trains with "
                "MultiWorkerMirroredStrategy, which has none",
                hint="run every machine as a 'worker' (or one 'chief' and 'worker's)",
            )
    kind, idx = rename.get(str(task["type"]), str(task["type"])), int(task.get("index", 0))
    if kind == "evaluator":
        raise EnvironmentProblem(
            "this task is TF_CONFIG's 'evaluator': bigmodel evaluates on the chief after "
            "each epoch and has no side-car evaluator",
            hint="drop the evaluator task, or run `bigmodel eval RUN` on it when training ends",
        )
    if not (0 <= idx < len(cluster.get(kind, []))):
        raise EnvironmentProblem(f"TF_CONFIG task {kind}:{idx} is not in the cluster {cluster}")
    return Cluster(cluster, kind, idx, "TF_CONFIG")


def _port(env: Mapping[str, str]) -> int:
    try:
        return int(env.get("BIGMODEL_PORT") or DEFAULT_PORT)
    except ValueError:
        raise EnvironmentProblem(
            f"BIGMODEL_PORT is not a port number: {env.get('BIGMODEL_PORT')!r}"
        ) from None


def from_sagemaker(
    hosts_json: str | None, current: str | None, env: Mapping[str, str], where: str
) -> Cluster:
    try:
        hosts = json.loads(hosts_json or "null")
    except json.JSONDecodeError:
        hosts = None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise EnvironmentProblem(
            f"{where}: the SageMaker host list is not a JSON list of names: {hosts_json!r}",
            hint='SageMaker sets SM_HOSTS=["algo-1","algo-2"] and SM_CURRENT_HOST=algo-1',
        )
    if current not in hosts:
        raise EnvironmentProblem(
            f"{where}: the current host {current!r} is not among the hosts {hosts}"
        )
    port = _port(env)
    hosts = sorted(
        hosts, key=lambda h: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", h)]
    )  # algo-2 before algo-10
    return Cluster(
        {"worker": [f"{h}:{port}" for h in hosts]}, "worker", hosts.index(current), "sagemaker"
    )


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value in (None, ""):
        if default is None:
            raise EnvironmentProblem(f"{name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise EnvironmentProblem(f"{name} is not a whole number: {value!r}") from None


def from_jobset(env: Mapping[str, str]) -> Cluster:
    """One worker a pod. The pod's place comes from JOB_INDEX (the Job's index in
    its replicated job: annotation jobset.sigs.k8s.io/job-index) and
    JOB_COMPLETION_INDEX (the pod's index in its Job, set by Kubernetes for an
    Indexed Job); the sizes from REPLICATED_JOB_REPLICAS (annotation
    jobset.sigs.k8s.io/replicatedjob-replicas) and BIGMODEL_PODS_PER_JOB (the
    Job's parallelism, 1 when each Job is one pod)."""
    name = env["JOBSET_NAME"]
    rjob = env.get("REPLICATED_JOB_NAME")
    if not rjob:
        raise EnvironmentProblem(
            "JOBSET_NAME is set but REPLICATED_JOB_NAME is not",
            hint="pass the pod annotation jobset.sigs.k8s.io/replicatedjob-name as "
            "REPLICATED_JOB_NAME (docs/several-machines.md)",
        )
    replicas, pods = _int(env, "REPLICATED_JOB_REPLICAS", 1), _int(env, "BIGMODEL_PODS_PER_JOB", 1)
    job, pod = _int(env, "JOB_INDEX", 0), _int(env, "JOB_COMPLETION_INDEX", 0)
    if not (0 <= job < replicas and 0 <= pod < pods):
        raise EnvironmentProblem(
            f"JobSet pod {job}-{pod} is outside {replicas} job(s) of {pods} pod(s)",
            hint="check REPLICATED_JOB_REPLICAS and BIGMODEL_PODS_PER_JOB",
        )
    subdomain, port = env.get("JOBSET_SUBDOMAIN") or name, _port(env)
    hosts = [
        f"{name}-{rjob}-{j}-{p}.{subdomain}:{port}" for j in range(replicas) for p in range(pods)
    ]
    return Cluster({"worker": hosts}, "worker", job * pods + pod, "jobset")


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list: 'gpu[01-03,7],login' -> gpu01 gpu02 gpu03 gpu7 login."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text):
        groups = re.split(r"(\[[^\]]*\])", part)
        names = [""]
        for g in groups:
            if g.startswith("["):
                options = []
                for r in g[1:-1].split(","):
                    a, _, b = r.partition("-")
                    options += (
                        [str(i).zfill(len(a)) for i in range(int(a), int(b) + 1)] if b else [a]
                    )
                names = [n + o for n in names for o in options]
            else:
                names = [n + g for n in names]
        hosts += [n for n in names if n]
    return hosts


def expand_tasks_per_node(text: str) -> list[int]:
    """'2(x3),1' -> [2, 2, 2, 1]."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise EnvironmentProblem(f"cannot read SLURM_STEP_TASKS_PER_NODE {text!r}")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def from_slurm(env: Mapping[str, str]) -> Cluster:
    """One worker a task of this ``srun`` step. The batch script itself (sbatch
    without srun) has no step variables and is one process, whatever --ntasks says."""
    ntasks = _int(env, "SLURM_STEP_NUM_TASKS", _int(env, "SLURM_NTASKS", 1))
    rank = _int(env, "SLURM_PROCID", 0)
    nodes = expand_hostlist(
        env.get("SLURM_STEP_NODELIST")
        or env.get("SLURM_JOB_NODELIST")
        or env.get("SLURMD_NODENAME")
        or "localhost"
    )
    per_node = expand_tasks_per_node(
        env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or str(ntasks)
    )
    if len(per_node) != len(nodes) or sum(per_node) != ntasks:
        raise EnvironmentProblem(
            f"Slurm step of {ntasks} tasks does not fit its nodes {nodes} x tasks {per_node}"
        )
    if env.get("BIGMODEL_PORT_BASE"):
        base = _int(env, "BIGMODEL_PORT_BASE")
    else:  # a range of its own for each job step, so two jobs sharing a node do not collide
        base = (
            SLURM_PORT_FIRST
            + ((_int(env, "SLURM_JOB_ID") * 8 + _int(env, "SLURM_STEP_ID", 0)) % SLURM_PORT_SLOTS)
            * SLURM_PORT_SPAN
        )
    cyclic = (env.get("SLURM_DISTRIBUTION") or "block").startswith("cyclic")
    place: list[tuple[int, int]] = []  # rank -> (node, slot on that node)
    if cyclic:
        filled = [0] * len(nodes)
        while len(place) < ntasks:
            for n in range(len(nodes)):
                if filled[n] < per_node[n] and len(place) < ntasks:
                    place.append((n, filled[n]))
                    filled[n] += 1
    else:
        place = [(n, s) for n in range(len(nodes)) for s in range(per_node[n])]
    workers = [f"{nodes[n]}:{base + s}" for n, s in place]
    node, slot = place[rank]
    gpus_on_node = env.get("SLURM_GPUS_ON_NODE")
    return Cluster(
        {"worker": workers},
        "worker",
        rank,
        "slurm",
        local_index=_int(env, "SLURM_LOCALID", slot),
        local_tasks=per_node[node],
        node_gpus=int(gpus_on_node) if (gpus_on_node or "").isdigit() else None,
    )


def gpu_share(
    gpus: list[Any], local_index: int, local_tasks: int, node_gpus: int | None = None
) -> list[Any]:
    """The GPUs a task takes of the ones it sees (CUDA_VISIBLE_DEVICES). When
    Slurm bound GPUs to each task (--gpus-per-task, --gpu-bind) a task sees fewer
    than the node's SLURM_GPUS_ON_NODE and takes all it sees. When the node's
    tasks all see the same GPUs, each takes an even slice; with fewer GPUs than
    tasks they share them."""
    bound = node_gpus is not None and len(gpus) < node_gpus
    if bound or local_tasks <= 1 or len(gpus) < local_tasks:
        return list(gpus)
    k = len(gpus) // local_tasks
    return list(gpus[local_index * k : (local_index + 1) * k])
