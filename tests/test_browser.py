"""The web page of serve.py in a real headless Chromium: an upload, and the live webcam fed by
Chromium's fake camera from a video file. Screenshots are saved in each test's folder."""

import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import REPO
from support.server_process import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # a server and a browser
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium: the browser tests need Debian's chromium package; "
        "run .ci/run, which installs it, or apt-get install chromium",
    ),
]
LABEL = re.compile(r"^\d+, F$")  # "33, F": an age and the astronaut's gender


def write_y4m(path, frames: list[np.ndarray], fps: int = 10) -> None:
    """A YUV4MPEG2 video (4:2:0), the format Chromium's fake camera reads."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as video:
        video.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            video.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


def webcam_clip(path) -> None:
    """Two seconds of the astronaut drifting in a 640 x 480 frame, like a face before a webcam."""
    face = cv2.resize(cv2.imread(str(REPO / "examples" / "astronaut.png")), (440, 440))
    frames = []
    for step in range(20):
        frame = np.full((480, 640, 3), 90, np.uint8)
        left, top = 60 + 4 * step, 20 + step
        frame[top : top + 440, left : left + 440] = face
        frames.append(frame)
    write_y4m(path, frames)


@pytest.fixture(scope="module")
def server():
    with running_server("--model", "dlib-models") as url:
        yield url


def launch(playwright, *args: str):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *args])


def test_upload_shows_a_labelled_face(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(server)
        expect(page.locator("#model")).to_contain_text("dlib-models")
        page.set_input_files("#file", REPO / "examples" / "astronaut.png")
        expect(page.locator("#faces .label")).to_have_text(LABEL, timeout=15_000)
        expect(page.locator("#status")).to_contain_text("1 face(s)")
        # The faces are drawn on the canvas: its pixels hold the box colour.
        orange = page.evaluate(
            """() => {
              const c = document.getElementById("canvas");
              const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 0; i < data.length; i += 4)
                if (data[i] === 255 && data[i + 1] === 140 && data[i + 2] === 0) n++;
              return n;
            }"""
        )
        assert orange > 100
        page.screenshot(path=tmp_path / "upload.png", full_page=True)
        # A refused upload clears the earlier result instead of showing its error beside it.
        (tmp_path / "notes.png").write_text("not an image")
        page.set_input_files("#file", tmp_path / "notes.png")
        expect(page.locator("#status")).to_have_class(re.compile("error"), timeout=15_000)
        expect(page.locator("#faces li")).to_have_count(0)
        assert page.evaluate("() => document.getElementById('canvas').width") == 0
        browser.close()
    assert (tmp_path / "upload.png").stat().st_size > 10_000


def test_camera_shows_live_labels(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    webcam_clip(tmp_path / "webcam.y4m")
    with sync_playwright() as playwright:
        browser = launch(
            playwright,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={tmp_path / 'webcam.y4m'}",
        )
        page = browser.new_page()
        page.goto(server)
        page.click("#camera")
        expect(page.locator("#faces .label")).to_have_text(LABEL, timeout=15_000)
        expect(page.locator("#status")).to_contain_text(re.compile(r"[1-9][\d.]* frames/s"))
        expect(page.locator("#camera")).to_have_text("Stop camera")
        page.screenshot(path=tmp_path / "camera.png", full_page=True)
        page.click("#camera")
        expect(page.locator("#camera")).to_have_text("Camera")
        browser.close()
    assert (tmp_path / "camera.png").stat().st_size > 10_000


def test_an_insecure_origin_says_why_there_is_no_camera(server, tmp_path):
    """The page opened as from another machine over plain HTTP: Chromium maps the name to
    loopback, so the origin is not secure while the traffic stays on this machine."""
    from playwright.sync_api import expect, sync_playwright

    port = server.rsplit(":", 1)[1]
    with sync_playwright() as playwright:
        browser = launch(playwright, "--host-resolver-rules=MAP insecure.test 127.0.0.1",
                         "--use-fake-device-for-media-stream",
                         "--use-fake-ui-for-media-stream")  # fmt: skip
        page = browser.new_page()
        page.goto(f"http://insecure.test:{port}/")
        page.click("#camera")
        expect(page.locator("#status")).to_contain_text("not a secure context")
        expect(page.locator("#status")).to_contain_text("https://")
        page.screenshot(path=tmp_path / "insecure.png", full_page=True)
        browser.close()
