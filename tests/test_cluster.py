"""One resolver for every platform's description of a job (training/cluster.py).

Each environment below is what the platform injects, copied from a real job
(the Slurm ones from `srun -N1 -n2 env` on slurm-wlm 24.11) or from its
documentation; every platform must come out as the same kind of worker plan.
"""

import json

import pytest

from bigmodel_cli.errors import EnvironmentProblem
from bigmodel_cli.training import cluster
from bigmodel_cli.training.strategy import plan

# `srun -N1 -n2 env` on the local Slurm, task 1 (trimmed to the SLURM_ variables that matter)
SRUN_TASK1 = {
    "SLURM_JOB_ID": "2",
    "SLURM_JOBID": "2",
    "SLURM_STEP_ID": "0",
    "SLURM_STEPID": "0",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_NPROCS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_NUM_NODES": "1",
    "SLURM_STEP_NODELIST": "vm",
    "SLURM_STEP_TASKS_PER_NODE": "2",
    "SLURM_TASKS_PER_NODE": "2",
    "SLURM_JOB_NODELIST": "vm",
    "SLURM_NODELIST": "vm",
    "SLURMD_NODENAME": "vm",
    "SLURM_CPUS_ON_NODE": "2",
    "SLURM_GTIDS": "0,1",
    "SLURM_NODEID": "0",
}
# The batch script of `sbatch -n 2` (no srun): no step variables
SBATCH_SCRIPT = {k: v for k, v in SRUN_TASK1.items() if not k.startswith("SLURM_STEP")} | {
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_GTIDS": "0",
}


def test_expand_hostlist():
    assert cluster.expand_hostlist("vm") == ["vm"]
    assert cluster.expand_hostlist("gpu[01-03,7],login") == [
        "gpu01",
        "gpu02",
        "gpu03",
        "gpu7",
        "login",
    ]
    assert cluster.expand_hostlist("a[1-2]-ib[0-1]") == ["a1-ib0", "a1-ib1", "a2-ib0", "a2-ib1"]
    assert cluster.expand_hostlist("n[8-11]") == ["n8", "n9", "n10", "n11"]
    assert cluster.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]


def test_slurm_srun_step():
    c = cluster.resolve(SRUN_TASK1)
    assert c.source == "slurm" and c.task_type == "worker" and c.task_index == 1 and c.size == 2
    hosts = c.cluster["worker"]
    assert [h.split(":")[0] for h in hosts] == ["vm", "vm"] and len(
        set(hosts)
    ) == 2  # two ports on one node
    assert (c.local_index, c.local_tasks) == (1, 2)
    p = plan("auto", [], SRUN_TASK1)
    assert p.kind == "multi_worker" and p.workers == 2 and not p.is_chief and p.source == "slurm"
    assert plan("auto", [], SRUN_TASK1 | {"SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).is_chief


def test_slurm_batch_script_is_one_process():
    assert cluster.resolve(SBATCH_SCRIPT) is None
    assert plan("auto", [], SBATCH_SCRIPT).kind == "one_device"


def test_slurm_two_nodes_block_and_cyclic():
    env = SRUN_TASK1 | {
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_NODELIST": "node[1-2]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "0",
    }
    block = cluster.resolve(env).cluster["worker"]
    assert [h.split(":")[0] for h in block] == ["node1", "node1", "node2", "node2"]
    cyclic = cluster.resolve(env | {"SLURM_DISTRIBUTION": "cyclic"}).cluster["worker"]
    assert [h.split(":")[0] for h in cyclic] == ["node1", "node2", "node1", "node2"]
    # every task computes the same list
    assert (
        cluster.resolve(env | {"SLURM_PROCID": "3", "SLURM_LOCALID": "1"}).cluster["worker"]
        == block
    )


def test_slurm_ports_differ_between_jobs_and_can_be_set():
    a = cluster.resolve(SRUN_TASK1).cluster["worker"]
    b = cluster.resolve(SRUN_TASK1 | {"SLURM_JOB_ID": "3"}).cluster["worker"]
    assert set(a).isdisjoint(b)
    assert cluster.resolve(SRUN_TASK1 | {"BIGMODEL_PORT_BASE": "40000"}).cluster["worker"] == [
        "vm:40000",
        "vm:40001",
    ]


def test_slurm_gpus_never_call_nvidia_smi(monkeypatch):
    import subprocess

    monkeypatch.setattr(
        subprocess, "check_output", lambda *a, **k: pytest.fail("a subprocess was started")
    )
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a subprocess was started"))
    gpus = [
        "/physical_device:GPU:0",
        "/physical_device:GPU:1",
        "/physical_device:GPU:2",
        "/physical_device:GPU:3",
    ]
    # 2 tasks on a node with 4 GPUs that both see: an even slice each
    assert plan("auto", gpus, SRUN_TASK1 | {"SLURM_GPUS_ON_NODE": "4"}).devices == [
        "/gpu:2",
        "/gpu:3",
    ]
    assert plan("auto", gpus, SRUN_TASK1 | {"SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).devices == [
        "/gpu:0",
        "/gpu:1",
    ]
    # --gpus-per-task=2: Slurm bound 2 GPUs to the task (CUDA_VISIBLE_DEVICES), fewer than the
    # node's 4: all of them
    assert plan("auto", gpus[:2], SRUN_TASK1 | {"SLURM_GPUS_ON_NODE": "4"}).devices == [
        "/gpu:0",
        "/gpu:1",
    ]
    # one GPU for two tasks: shared
    assert plan("auto", gpus[:1], SRUN_TASK1).devices == ["/gpu:0"]
    # a CPU-only node
    assert plan("auto", [], SRUN_TASK1).devices == ["/cpu:0"]


VERTEX = {
    "cluster": {
        "chief": ["cmle-training-workerpool0-ab-0:2222"],
        "worker": ["cmle-training-workerpool1-ab-0:2222", "cmle-training-workerpool1-ab-1:2222"],
    },
    "environment": "cloud",
    "task": {"type": "worker", "index": 1, "trial": ""},
    "job": {
        "worker_pool_specs": [
            {"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1}
        ]
    },
}


def test_tf_config_vertex_chief_and_workers():
    c = cluster.resolve({"TF_CONFIG": json.dumps(VERTEX)})
    assert c.size == 3 and (c.task_type, c.task_index) == ("worker", 1)
    p = plan("auto", [], {"TF_CONFIG": json.dumps(VERTEX)})
    assert p.workers == 3 and not p.is_chief
    chief = VERTEX | {"task": {"type": "chief", "index": 0}}
    assert plan("auto", [], {"TF_CONFIG": json.dumps(chief)}).is_chief


def test_tf_config_master_is_the_chief():
    legacy = {
        "cluster": {"master": ["m:2222"], "worker": ["w0:2222"]},
        "task": {"type": "master", "index": 0},
        "environment": "cloud",
    }
    p = plan("auto", [], {"TF_CONFIG": json.dumps(legacy)})
    assert p.is_chief and p.cluster == {"chief": ["m:2222"], "worker": ["w0:2222"]}


def test_tf_config_kubeflow_tfjob_workers_only():
    # Kubeflow's TFJob operator: workers only, the chief is worker 0
    tfjob = {
        "cluster": {"worker": ["mnist-worker-0.ns.svc:2222", "mnist-worker-1.ns.svc:2222"]},
        "task": {"type": "worker", "index": 0},
        "environment": "cloud",
    }
    p = plan("auto", [], {"TF_CONFIG": json.dumps(tfjob)})
    assert p.is_chief and p.workers == 2


def test_tf_config_unsupported_tasks_say_so():
    with pytest.raises(EnvironmentProblem, match="parameter servers"):
        cluster.resolve(
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": ["a:1"], "ps": ["p:1"]},
                        "task": {"type": "worker", "index": 0},
                    }
                )
            }
        )
    with pytest.raises(EnvironmentProblem, match="evaluator"):
        cluster.resolve(
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"worker": ["a:1"], "evaluator": ["e:1"]},
                        "task": {"type": "evaluator", "index": 0},
                    }
                )
            }
        )
    # an evaluator in the cluster does not count as a worker for the others
    c = cluster.resolve(
        {
            "TF_CONFIG": json.dumps(
                {
                    "cluster": {"worker": ["a:1", "b:1"], "evaluator": ["e:1"]},
                    "task": {"type": "worker", "index": 0},
                }
            )
        }
    )
    assert c.size == 2


def test_sagemaker_env_and_resourceconfig():
    env = {
        "SM_HOSTS": '["algo-2","algo-1","algo-10"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_NUM_GPUS": "0",
    }
    c = cluster.resolve(env)
    assert (
        c.source == "sagemaker"
        and c.cluster["worker"] == ["algo-1:12345", "algo-2:12345", "algo-10:12345"]
        and c.task_index == 1
    )
    assert plan("auto", [], env | {"SM_CURRENT_HOST": "algo-1"}).is_chief
    doc = json.dumps(
        {
            "current_host": "algo-1",
            "current_instance_type": "ml.c5.xlarge",
            "hosts": ["algo-1", "algo-2"],
            "network_interface_name": "eth0",
        }
    )
    c = cluster.resolve(
        {"TRAINING_JOB_NAME": "job-1"},
        read=lambda path: doc if path == cluster.SAGEMAKER_RESOURCE_CONFIG else None,
    )
    assert c.cluster["worker"] == ["algo-1:12345", "algo-2:12345"] and c.task_index == 0
    with pytest.raises(EnvironmentProblem, match="algo-3"):
        cluster.resolve({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-3"})
    # one SageMaker host alone: no cluster to form
    assert (
        plan("auto", [], {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}).kind
        == "one_device"
    )


def test_jobset_indices():
    env = {
        "JOBSET_NAME": "train",
        "REPLICATED_JOB_NAME": "workers",
        "JOB_INDEX": "1",
        "JOB_COMPLETION_INDEX": "0",
        "REPLICATED_JOB_REPLICAS": "2",
        "BIGMODEL_PODS_PER_JOB": "2",
    }
    c = cluster.resolve(env)
    assert c.cluster["worker"] == [
        "train-workers-0-0.train:12345",
        "train-workers-0-1.train:12345",
        "train-workers-1-0.train:12345",
        "train-workers-1-1.train:12345",
    ]
    assert c.task_index == 2 and c.source == "jobset"
    assert plan("auto", [], env | {"JOB_INDEX": "0"}).is_chief
    with pytest.raises(EnvironmentProblem, match="REPLICATED_JOB_NAME"):
        cluster.resolve({"JOBSET_NAME": "train"})
    with pytest.raises(EnvironmentProblem, match="outside"):
        cluster.resolve(env | {"JOB_INDEX": "2"})


def test_every_platform_gives_the_same_plan_shape():
    envs = {
        "TF_CONFIG": {
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": ["h0:1", "h1:1"]}, "task": {"type": "worker", "index": 1}}
            )
        },
        "slurm": SRUN_TASK1,
        "sagemaker": {"SM_HOSTS": '["algo-1","algo-2"]', "SM_CURRENT_HOST": "algo-2"},
        "jobset": {
            "JOBSET_NAME": "t",
            "REPLICATED_JOB_NAME": "w",
            "JOB_INDEX": "1",
            "REPLICATED_JOB_REPLICAS": "2",
        },
    }
    for source, env in envs.items():
        p = plan("auto", [], env)
        assert (p.kind, p.workers, p.task_type, p.task_index, p.is_chief, p.source) == (
            "multi_worker",
            2,
            "worker",
            1,
            False,
            source,
        ), source
        assert len(p.cluster["worker"]) == 2
