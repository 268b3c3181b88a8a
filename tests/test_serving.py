"""serve.py over real HTTP on 127.0.0.1: predictions, bad requests, limits, token, CORS, load."""

import asyncio
import concurrent.futures
import contextlib
import io
import select
import socket
import struct
import time
import zlib

import cv2
import h11
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, refusal, user_error
from PIL import Image
from support.server_process import running_server
from uvicorn.protocols.http import h11_impl

from age_gender.apps import serving
from age_gender.cli import serve as serve_script
from age_gender.errors import UserError

ASTRONAUT = REPO / "examples" / "astronaut.png"

pytestmark = pytest.mark.slow  # HTTP servers


def encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def astronaut(size: int | None = None) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    return image if size is None else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def frame_640x480() -> np.ndarray:
    """The astronaut in a 640 x 480 frame, as a webcam would send it."""
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 80:560] = astronaut(480)
    return frame


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: a black side x side PNG, a few hundred kB for side = 12000."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor, row = zlib.compressobj(9), bytes(1 + 3 * side)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def post(client: httpx.Client, url: str, data: bytes, name: str = "face.jpg", **kwargs):
    return client.post(f"{url}/v1/predict", files={"image": (name, data)}, **kwargs)


@pytest.fixture(scope="module")
def server():
    """serve.py with the bundled dlib-models networks and default options."""
    with running_server("--model", "dlib-models") as url:
        yield url


def test_predictions_are_the_demos(server, tmp_path, run_script):
    url = server
    demo = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--model", "dlib-models",
        "--output_dir", tmp_path / "demo",
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    expected = pd.read_csv(tmp_path / "demo" / "predictions.csv").iloc[0]
    with httpx.Client(timeout=60) as client:
        answers = {
            suffix: post(client, url, data, f"astronaut{suffix}")
            for suffix, data in [
                (".png", ASTRONAUT.read_bytes()),
                (".jpg", encoded(astronaut(), ".jpg")),
                (".webp", encoded(astronaut(), ".webp")),
            ]
        }
        no_face = post(client, url, (REPO / "examples" / "cat_no_face.png").read_bytes(), "c.png")
        model = client.get(f"{url}/v1/model").json()
        assert client.get(f"{url}/healthz").json() == {"status": "ok"}
    for suffix, answer in answers.items():
        assert answer.status_code == 200, (suffix, answer.text)
        result = answer.json()
        assert (result["width"], result["height"], result["model"]) == (512, 512, "dlib-models")
        assert result["time_ms"] > 0 and len(result["faces"]) == 1, (suffix, result)
        assert result["faces"][0]["gender"] == expected["gender"] == "F"
    face = answers[".png"].json()["faces"][0]  # the same pixels as the demo read
    for column in ("x_min", "y_min", "x_max", "y_max", "age", "gender_probability"):
        assert face[column] == pytest.approx(expected[column]), column
    assert face["age_std"] is None and face["score"] > 0.5  # dlib-models gives no spread
    assert no_face.status_code == 200 and no_face.json()["faces"] == []
    assert model["model"] == "dlib-models" and model["detector"]["upsample"] == 1
    assert model["limits"] == {
        "max_upload_mb": 10.0,
        "max_megapixels": 40.0,
        "queue": 64,
        "body_timeout": 20.0,
        "header_timeout": 10.0,
        "max_connections": 256,
        "min_upload_rate": 500,
        "upload_grace": 10.0,
    }


def test_page_and_api_description_work_offline(server):
    url = server
    with httpx.Client(timeout=30) as client:
        page = client.get(url)
        script = client.get(f"{url}/web/app.js")
        docs = client.get(f"{url}/docs")
        schema = client.get(f"{url}/openapi.json").json()
        assets = [client.get(f"{url}{path}") for path in _asset_paths(docs.text)]
    assert page.status_code == 200 and 'src="web/app.js"' in page.text
    assert script.status_code == 200 and "v1/predict" in script.text
    assert "/v1/predict" in schema["paths"] and "/v1/model" in schema["paths"]
    # The OpenAPI page's scripts and styles come from this server, not from a CDN.
    assert docs.status_code == 200 and "http" not in " ".join(_asset_paths(docs.text))
    assert assets and all(asset.status_code == 200 for asset in assets)


def _asset_paths(html: str) -> list[str]:
    import re

    return re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)


def test_bad_requests_get_json_errors(server):
    url = server
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    jpeg = encoded(astronaut(), ".jpg")
    large_png = encoded(
        np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), np.uint8), ".png"
    )
    assert 1.5e6 < len(large_png) < 10e6  # over 1 MB (multipart's usual spool size), under 10
    with httpx.Client(timeout=60) as client:
        cases = {
            "no file": (client.post(f"{url}/v1/predict"), 422),
            "a path, not a file": (
                client.post(f"{url}/v1/predict", data={"image": "/etc/passwd"}),
                422,
            ),
            "empty": (post(client, url, b""), 422),
            "text": (post(client, url, b"hello, not an image", "x.jpg"), 415),
            "gif": (post(client, url, gif.getvalue(), "x.gif"), 415),
            "truncated": (post(client, url, jpeg[: len(jpeg) // 2]), 422),
            "over 10 MB": (post(client, url, bytes(11_000_000), "big.jpg"), 413),
            "decompression bomb": (post(client, url, png_bomb(12000), "bomb.png"), 413),
            "large but fine": (post(client, url, large_png, "noise.png"), 200),
        }
    for case, (answer, status) in cases.items():
        assert answer.status_code == status, (case, answer.text)
        body = answer.json()  # JSON, always
        assert "Traceback" not in answer.text and "root:" not in answer.text, case
        if status != 200:
            assert body["detail"], case
    assert "12000 x 12000 pixels" in cases["decompression bomb"][0].json()["detail"]
    assert "truncated" in cases["truncated"][0].json()["detail"]


def test_32_concurrent_clients_all_answered(server):
    url = server
    frame = encoded(frame_640x480(), ".jpg")

    def client_session(_) -> list[tuple[int, int]]:
        with httpx.Client(timeout=120) as client:
            answers = [post(client, url, frame) for _ in range(3)]
        return [(answer.status_code, len(answer.json().get("faces", []))) for answer in answers]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = [done for session in pool.map(client_session, range(32), timeout=300)
                   for done in session]  # fmt: skip
    assert results == [(200, 1)] * 96


def test_token_cors_limits_and_queue(tmp_path):
    small = encoded(astronaut(320), ".jpg")  # 0.1 megapixels
    with running_server(
        "--model", "dlib-models", "--token", "s3cret", "--cors", "http://example.org",
        "--max_upload_mb", "1", "--max_megapixels", "0.2", "--queue", "2",
    ) as url, httpx.Client(timeout=60) as client:  # fmt: skip
        auth = {"Authorization": "Bearer s3cret"}
        assert client.get(f"{url}/v1/model").status_code == 401
        assert (
            client.get(f"{url}/v1/model", headers={"Authorization": "Bearer no"}).status_code == 401
        )
        assert post(client, url, small).status_code == 401
        assert client.get(f"{url}/healthz").status_code == 200
        assert client.get(f"{url}/v1/model", headers=auth).status_code == 200
        preflight = client.options(
            f"{url}/v1/predict",
            headers={"Origin": "http://example.org", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.headers.get("access-control-allow-origin") == "http://example.org"
        other = client.get(f"{url}/healthz", headers={"Origin": "http://elsewhere.org"})
        assert "access-control-allow-origin" not in other.headers
        over_pixels = post(client, url, ASTRONAUT.read_bytes(), "a.png", headers=auth)
        assert over_pixels.status_code == 413 and "0.2 megapixels" in over_pixels.text
        over_size = post(client, url, bytes(1_200_000), headers=auth)
        assert over_size.status_code == 413 and "1 MB" in over_size.text

        def one(_) -> int:
            with httpx.Client(timeout=120) as own:
                return post(own, url, small, headers=auth).status_code

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(one, range(12), timeout=120))
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 2 and 503 in statuses
        assert post(client, url, small, headers=auth).json()["faces"]  # still serving
    # CORS is off unless asked for.
    with httpx.Client() as client, running_server("--model", "dlib-models") as url:
        answer = client.get(f"{url}/healthz", headers={"Origin": "http://example.org"})
    assert "access-control-allow-origin" not in answer.headers


def test_a_taken_port_is_one_line(run_script):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_script("serve.py", "--model", "dlib-models", "--port", port, timeout=120)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in user_error(result)


def dribbler(url: str, length: int) -> socket.socket:
    """A connection that has sent a whole request's headers, announcing `length` bytes of body,
    and none of the body yet."""
    host, port = url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)), timeout=10)
    client.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                   b"Content-Length: %d\r\n\r\n" % length)  # fmt: skip
    return client


def test_bodies_dribbled_under_the_minimum_rate_are_cut_and_free_the_server():
    """--max_connections (3) clients each sending a byte every 0.25 s, never stalling for
    --body_timeout (2 s), hold every connection (/healthz gets 503) during the grace period
    (3 s); then they are under the minimum rate (default 500 bytes/s): each gets 408 and its
    connection closed, and /healthz answers. A stall timer alone lets them hold on for as long
    as they send."""
    with running_server("--model", "dlib-models", "--max_connections", "3",
                        "--body_timeout", "2", "--upload_grace", "3") as url:  # fmt: skip
        host, port = url.removeprefix("http://").split(":")
        clients = [dribbler(url, 1000) for _ in range(3)]
        started = time.monotonic()
        answers = {client: b"" for client in clients}
        open_ = set(clients)
        busy = None
        try:
            while open_ and time.monotonic() - started < 10:
                for client in open_:
                    if not answers[client]:  # still sending its body
                        with contextlib.suppress(OSError):  # closed meanwhile: read below
                            client.sendall(b"x")
                readable, _, _ = select.select(list(open_), [], [], 0.25)
                for client in readable:
                    try:
                        data = client.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    answers[client] += data
                    if not data:
                        open_.discard(client)
                if busy is None and time.monotonic() - started > 0.5:  # well within the grace
                    with socket.create_connection((host, int(port)), timeout=10) as other:
                        busy = other.recv(100)
            cut = time.monotonic() - started
            assert busy.startswith(b"HTTP/1.1 503"), busy
            assert not open_, f"{len(open_)} dribbling clients still hold a connection"
            healthz = httpx.get(f"{url}/healthz", timeout=5)
        finally:
            for client in clients:
                client.close()
    assert 3 <= cut < 6, cut
    for answer in answers.values():
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower() and b"minimum of 500 bytes/s" in answer
    assert healthz.status_code == 200


class RenamedConnections(h11_impl.H11Protocol):
    """H11Protocol as a release that renamed `connections` would have it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_connections = self.__dict__.pop("connections")


class WithoutResponseHook(asyncio.Protocol):
    """A protocol built as H11Protocol is, with its attributes, but no on_response_complete."""

    def __init__(self, config, server_state, app_state, _loop=None):
        self.conn = h11.Connection(h11.SERVER)
        self.connections = server_state.connections
        self.loop = _loop
        self.transport = None


def test_a_uvicorn_without_what_the_guards_extend_is_refused_in_one_line(capsys, monkeypatch):
    serving.check_protocol(h11_impl.H11Protocol)  # the installed uvicorn: one the pin allows
    assert f'"uvicorn{serving.UVICORN}"' in (REPO / "pyproject.toml").read_text()
    with pytest.raises(UserError, match="lacks connections, which the connection guards"):
        serving.check_protocol(RenamedConnections)
    with pytest.raises(UserError, match="lacks on_response_complete, which"):
        serving.check_protocol(WithoutResponseHook)
    monkeypatch.setattr(h11_impl, "H11Protocol", RenamedConnections)
    line = refusal(capsys, serve_script.main, "--model", "dlib-models", "--port", "0")
    assert line.endswith(f"lacks connections, which the connection guards extend; pip install "
                         f"'uvicorn{serving.UVICORN}'")  # fmt: skip
