"""``bigmodel train DIR --workers N``: N local worker processes, one cluster.

Each worker is an ordinary ``bigmodel train`` process with a generated
``TF_CONFIG`` (free loopback ports), so it runs exactly the multi-worker
path a real cluster runs. Worker 0 is the chief: its output is the user's;
the others' output goes to a log file shown only if they fail. If any worker
exits non-zero the others are stopped and the launcher exits non-zero,
naming the worker.

Example::

    code = launch_local(Path("exp"), ["train.epochs=3"], workers=2)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STOP_GRACE_S = 10.0


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def tf_configs(n: int) -> list[str]:
    hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
    return [
        json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
        for i in range(n)
    ]


def launch_local(
    path: Path, overrides: list[str], workers: int, resume: bool = False, json_out: bool = False
) -> int:
    args = [
        sys.executable,
        "-m",
        "bigmodel_cli",
        "train",
        str(path),
        "--set",
        "train.distribute=multi_worker",
    ]
    for o in overrides:
        args += ["--set", o]
    if resume:
        args.append("--resume")
    if json_out:
        args.append("--json")
    logs = Path(tempfile.mkdtemp(prefix="bigmodel-workers-"))
    procs: list[subprocess.Popen] = []
    files = []
    for i, cfg in enumerate(tf_configs(workers)):
        env = {**os.environ, "TF_CONFIG": cfg}
        if i == 0:
            procs.append(subprocess.Popen(args, env=env))
        else:
            f = open(logs / f"worker-{i}.log", "w")
            files.append(f)
            procs.append(subprocess.Popen(args, env=env, stdout=f, stderr=subprocess.STDOUT))
    failed: tuple[int, int] | None = None
    try:
        while any(p.poll() is None for p in procs):
            down = [(i, rc) for i, p in enumerate(procs) if (rc := p.poll()) not in (None, 0)]
            deadline = time.time() + 2.0
            while (
                down
                and all(rc > 0 for _, rc in down)
                and time.time() < deadline
                and any(p.poll() is None for p in procs)
            ):
                # A peer notices a killed worker (and exits 1) before the kernel has
                # finished tearing the killed one down: give its death time to show.
                time.sleep(0.1)
                down = [(i, rc) for i, p in enumerate(procs) if (rc := p.poll()) not in (None, 0)]
            if down:
                # A worker killed by a signal is the cause; the others exit 1 after
                # naming it (WorkerFailed), sometimes within the same poll.
                failed = min(down, key=lambda f: (f[1] > 0, f[0]))
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        return 130
    finally:
        if failed is not None:
            _stop(procs)
        for f in files:
            f.close()
    if failed is None:  # every worker ended between two polls
        down = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode]
        failed = min(down, key=lambda f: (f[1] > 0, f[0])) if down else None
    if failed is not None:
        i, rc = failed
        log = logs / f"worker-{i}.log"
        print(
            f"error: worker {i} of {workers} failed (exit code {rc}); all workers were stopped"
            + (f"; its log: {log}" if i else ""),
            file=sys.stderr,
        )
        return rc if rc > 0 else 1
    return 0


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
