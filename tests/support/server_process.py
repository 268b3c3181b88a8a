"""serve.py as a child process on a free port of 127.0.0.1, for the tests and benchmarks that
talk to it over HTTP as a client would (it runs `python -m age_gender.cli.serve`, the code of
serve.py, so an installed package works too)."""

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the default working folder: a checkout's root


@contextlib.contextmanager
def running_server(*args, cwd: Path = REPO, start_timeout: float = 180) -> Iterator[str]:
    """`python -m age_gender.cli.serve args...` (serve.py) on a free port of 127.0.0.1; yields
    its base URL, stops it after.

    Its output is read all along (so the pipe never fills) and shown if it fails to start.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "age_gender.cli.serve", "--port", "0", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    seen = []
    try:
        while True:
            try:
                seen.append(lines.get(timeout=start_timeout))
            except queue.Empty:
                raise AssertionError("serve.py did not start:\n" + "".join(seen)) from None
            match = re.search(r"Uvicorn running on (https?://127\.0\.0\.1:\d+)", seen[-1])
            if match:
                break
            if process.poll() is not None and lines.empty():
                raise AssertionError("serve.py stopped:\n" + "".join(seen))
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
