"""Shared fixtures: the entry points run as a user would, and a real HTTP server on loopback."""

import functools
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What the caller's shell sets does not steer the suite: the tests and the processes they start
# see none of these, and a test that needs one sets it itself.
CALLERS_SETTINGS = ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "KERAS_BACKEND",
                    "HYDRA_FULL_ERROR", "WANDB_MODE", "TF_CONFIG", "RAY_ADDRESS")  # fmt: skip
for name in [name for name in os.environ
             if name in CALLERS_SETTINGS or name.startswith("AGE_GENDER_")]:  # fmt: skip
    del os.environ[name]
ASTRONAUT_FACE = (175, 76, 266, 167)  # HOG's box of the face in examples/astronaut.png
# What the tests of training's mechanics (resuming, workers, schedules, a full disk) train:
# WideResNet10_2 at 32 px, whose graph traces in a fifth of MobileNetV3Small's time (about 2 s
# against 10 a run here, the fixed cost of every training a test starts).
SMALL_MODEL = [
    "model.model_name=WideResNet10_2",
    "model.img_size=32",
    "model.weights=null",
    "model.batchnorm_momentum=0.9",
]


def astronaut():
    """examples/astronaut.png as RGB uint8 (a public-domain photo of one face)."""
    import cv2

    return cv2.cvtColor(cv2.imread(str(REPO / "examples" / "astronaut.png")), cv2.COLOR_BGR2RGB)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, in file order: xdist hands them out in turn to the two test
    processes (make test's -n 2) from the start, rather than one of them finishing with a
    training run while the other has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def run_script():
    """Runs `python <script> args...` of the repository (or `python -c CODE args...`) in `cwd`;
    returns the finished process."""

    def run(
        script: str, *args: str, cwd: Path = REPO, timeout: float = 600, env: dict | None = None
    ):
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        command = [script] if script.startswith("-") else [str(REPO / script)]
        return subprocess.run(
            [sys.executable, *command, *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )

    return run


def kill_when(arguments: list, ready: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Runs `python arguments...` and SIGKILLs it with its children once `ready()` holds: what
    a run killed at that moment leaves behind. Fails, saying `what`, if `ready()` never holds."""
    run = subprocess.Popen(
        [sys.executable, *map(str, arguments)], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready() and run.poll() is None:
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert ready(), f"{what}: the run ended first"


def refusal(capsys, main, *argv) -> str:
    """The one `error:` line of a command refused in-process (`main(argv)`, exit 2, no
    traceback): user errors are tested without starting a Python per case."""
    with pytest.raises(SystemExit) as stopped:
        main([str(argument) for argument in argv])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error:"), lines
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


def user_error(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a refused run (exit 2, no traceback), which ends its output.

    Progress bars and TensorFlow's own start-up lines may come before it.
    """
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error")] == lines[-1:], result.stderr
    return lines[-1]


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support; paths in `server.cut_once` are cut mid-way once."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        data = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = data[start:]
        if self.command == "GET" and self.path in self.server.cut_once:
            self.server.cut_once.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        return io.BytesIO(body)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `served/`; yields (base URL, folder, server)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(RangeRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.cut_once = set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", root, server
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline(tmp_path):
    """Environment variables under which every HTTP(S) request meets a refusing local port (a
    proxy that is a bound, never listening socket) and Keras has no cached weights: a machine
    with network behaves like one without."""
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        yield {
            **{name: proxy for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
            "no_proxy": "", "NO_PROXY": "", "KERAS_HOME": str(tmp_path / "keras"),
        }  # fmt: skip


@pytest.fixture(scope="session")
def varied_model(tmp_path_factory):
    """EfficientNetB0 (the default family: its Normalization layer is the known ONNX trap) with
    BGR input and random heads large enough that every crop gets its own prediction; its card
    has every field training fills (calibration, interval, upright, provenance)."""
    import dataclasses

    import keras
    import numpy as np

    from age_gender.apps import export
    from age_gender.faces.crops import CropSpec
    from age_gender.models import model

    folder = tmp_path_factory.mktemp("varied_model")
    keras.utils.set_random_seed(0)  # the same backbone every run: its predictions are checked
    network = model.build_model("EfficientNetB0", CropSpec(48, 0.3), None, channel_order="BGR")
    # An untrained EfficientNet's features are tiny (about 1e-6): heads scaled to them give
    # logits of a few units, so each crop gets its own, far from uniform, prediction.
    features = keras.Model(network.input, network.get_layer("pred_age").input)
    scale = float(np.std(features(export.parity_crops(48).astype("float32"))))
    rng = np.random.default_rng(0)
    for name in ("pred_gender", "pred_age"):
        kernel = network.get_layer(name).kernel
        kernel.assign(rng.normal(0, 3.0 / (scale * kernel.shape[0] ** 0.5), kernel.shape))
    card = dataclasses.replace(
        model.model_card(network), upright=True, age_std_scale=0.6, age_std_power=1.3,
        interval_scale=1.7, provenance={"data": {"db": "utkface", "rows": 9}, "commit": "abc"},
    )  # fmt: skip
    model.set_card(network, card)
    network.save(folder / "tiny.keras")
    return folder
