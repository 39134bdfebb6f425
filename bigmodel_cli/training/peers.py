"""Multi-worker training's failures said in one line: which peer stopped, and a reader's error
told apart from a lost worker.
"""

from __future__ import annotations

from pathlib import Path


def reader_error(e: Exception) -> Exception:
    """A streamed source's DataError (a file that broke after the checks, an
    unreadable image) reaches the loop wrapped in a TensorFlow error: unwrap it."""
    import re

    from bigmodel_cli.errors import DataError

    m = re.search(r"(?:DataError|ConfigError): (.+)", str(e))
    return (
        DataError(
            m.group(1).strip(), hint="fix or remove that file, then: bigmodel train RUN --resume"
        )
        if m
        else e
    )


def describe_peer(plan, text: str) -> str:
    """'worker 1 (127.0.0.1:5001)': a cluster member whose address the error names."""
    import re

    for kind, members in (plan.cluster or {}).items():
        for i, member in enumerate(members if isinstance(members, list) else []):
            if member and re.search(re.escape(member) + r"(?!\d)", text):  # :5001 is not :50011
                return f"{kind} {i} ({member})"
    # The coordination service names tasks instead: /job:worker/replica:0/task:1
    for kind, index in re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", text):
        if (kind, int(index)) != (plan.task_type, plan.task_index):
            members = (plan.cluster or {}).get(kind) or []
            where = f" ({members[int(index)]})" if int(index) < len(members) else ""
            return f"{kind} {index}{where}"
    return "another worker"


class peer_failures:
    """In a multi-worker run, a collective that fails because a peer is gone
    becomes one clear WorkerFailed line naming the worker, with the resume command."""

    def __init__(self, plan, run_dir: Path):
        self.plan, self.run_dir = plan, run_dir

    def __enter__(self) -> "peer_failures":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or self.plan.kind != "multi_worker":
            return False
        import tensorflow as tf

        if isinstance(
            exc,
            (
                tf.errors.UnavailableError,
                tf.errors.CancelledError,
                tf.errors.DeadlineExceededError,
                tf.errors.AbortedError,
            ),
        ):
            from bigmodel_cli.errors import WorkerFailed

            me = f"{self.plan.task_type or 'worker'} {self.plan.task_index}"
            raise WorkerFailed(
                f"{me}: {describe_peer(self.plan, str(exc))} stopped answering "
                f"({type(exc).__name__}); this worker stops too",
                hint=f"restart every worker with: bigmodel train {self.run_dir} --resume (it "
                "continues from the last checkpoint)",
            ) from None
        return False
