"""A cluster of training workers on 127.0.0.1 (train.py processes, each with its TF_CONFIG), as
Kubernetes or Slurm would start them on several machines: for the tests and `bench/workers.py`."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Worker:
    """One worker's process and the files its output goes to (a pipe nobody reads while the
    workers wait for each other would fill and stop them all)."""

    process: subprocess.Popen
    stdout: Path
    stderr: Path


def start_workers(
    overrides: list[str], count: int, cwd: Path, env: Callable[[int], dict] | None = None
) -> list[Worker]:
    """`count` `python -m age_gender.cli.train overrides...` (train.py) processes, worker i of a
    TF_CONFIG cluster on 127.0.0.1 each (one alone, without TF_CONFIG), with `env(i)` added to
    its environment; their output in `cwd`/worker-i.out and .err."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(count)]}
    workers = []
    for index in range(count):
        environment = {**os.environ, **(env(index) if env else {})}
        if count > 1:
            task = {"type": "worker", "index": index}
            environment["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        out, err = (cwd / f"worker-{index}.{kind}" for kind in ("out", "err"))
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "age_gender.cli.train", *overrides], cwd=cwd,
                env=environment, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        workers.append(Worker(process, out, err))
    return workers


def finish(workers: list[Worker], timeout: float = 600) -> list[tuple[str, str]]:
    """Each worker's (stdout, stderr) once all have ended; fails naming the first that failed."""
    try:
        for worker in workers:
            worker.process.wait(timeout=timeout)
    finally:
        for worker in workers:
            worker.process.kill()
    outputs = [(worker.stdout.read_text(), worker.stderr.read_text()) for worker in workers]
    failed = [index for index, worker in enumerate(workers) if worker.process.returncode != 0]
    if failed:
        raise RuntimeError(f"worker {failed[0]} failed:\n{outputs[failed[0]][1][-3000:]}")
    return outputs
