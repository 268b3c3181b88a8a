"""Shared fixtures: running the entry points as a user would, in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_script():
    """Runs `python <script> args...` of the repository in `cwd`; returns the finished process."""

    def run(
        script: str, *args: str, cwd: Path = REPO, timeout: float = 600, env: dict | None = None
    ):
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        return subprocess.run(
            [sys.executable, str(REPO / script), *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )

    return run
