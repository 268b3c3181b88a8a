"""A cluster of training workers on 127.0.0.1 (train.py processes, each with its TF_CONFIG), as
Kubernetes or Slurm would start them on several machines: for the tests and `bench/workers.py`."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]  # train.py's folder in a checkout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_workers(
    overrides: list[str], count: int, cwd: Path, env: Callable[[int], dict] | None = None
) -> list:
    """`count` `python train.py overrides...` processes, worker i of a TF_CONFIG cluster on
    127.0.0.1 each (one alone, without TF_CONFIG), with `env(i)` added to its environment; their
    output in pipes."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(count)]}
    workers = []
    for index in range(count):
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env(index) if env else {})}
        if count > 1:
            task = {"type": "worker", "index": index}
            environment["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        workers.append(subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *overrides], cwd=cwd, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    return workers


def finish(workers: list, timeout: float = 600) -> list[tuple[str, str]]:
    """Each worker's (stdout, stderr) once all have ended; fails naming the first that failed."""
    try:
        outputs = [worker.communicate(timeout=timeout) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    failed = [index for index, worker in enumerate(workers) if worker.returncode != 0]
    if failed:
        raise RuntimeError(f"worker {failed[0]} failed:\n{outputs[failed[0]][1][-3000:]}")
    return outputs
