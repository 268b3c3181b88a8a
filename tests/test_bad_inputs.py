"""Inputs of careless or hostile users: each gets one clear line and exit 2, or is handled as
the README says, never a traceback, a hang, a crash or a lost file. Commands run in-process
(`main(argv)`) where a refusal comes before any model loads; in a child process where a crash
of a library would take the test down."""

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, refusal
from support.server_process import running_server

from age_gender import images, jobs
from age_gender.apps import annotation, serving
from age_gender.apps.limits import Limits
from age_gender.cli import annotate as annotate_script
from age_gender.cli import cache_faces as cache_script
from age_gender.cli import create_db as create_db_script
from age_gender.cli import demo as demo_script
from age_gender.cli import evaluate as evaluate_script
from age_gender.cli import export as export_script
from age_gender.cli import landmarks as landmarks_script
from age_gender.cli import serve as serve_script
from age_gender.cli import train as train_script
from age_gender.data import dataset, face_cache, labels, records
from age_gender.errors import UserError
from age_gender.estimators.keras_model import KerasEstimator
from age_gender.estimators.presets import load_estimator
from age_gender.faces import detection
from age_gender.faces.crops import CropSpec

ASTRONAUT = REPO / "examples" / "astronaut.png"
NOT_UTF8 = os.fsdecode(b"\xff\xfebad.png")


def small_astronaut(side: int = 256) -> np.ndarray:
    return cv2.resize(cv2.imread(str(ASTRONAUT)), (side, side), interpolation=cv2.INTER_AREA)


def photo_folder(folder, names=("a.png",)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        ok, data = cv2.imencode(".png", small_astronaut())
        (folder / name).write_bytes(data.tobytes())
    return folder


# Data loss --------------------------------------------------------------------------------------


def test_annotate_never_writes_over_its_input_csv(tmp_path, capsys):
    photo_folder(tmp_path / "img")
    csv = tmp_path / "in.csv"
    csv.write_text("img_paths\na.png\n")
    line = refusal(capsys, annotate_script.main, csv, "--root", tmp_path / "img",
                   "--output", csv, "--overwrite", "--model", "dlib-models")  # fmt: skip
    assert "would replace an input file" in line
    assert csv.read_text() == "img_paths\na.png\n"


def test_create_db_never_writes_over_an_image(tmp_path, capsys):
    folder = photo_folder(tmp_path / "FGNET", ["001A02.JPG", "001A05.JPG"])
    before = (folder / "001A02.JPG").read_bytes()
    line = refusal(capsys, create_db_script.main, "--db", "fgnet", "--data_dir", folder,
                   "--output", folder / "001A02.JPG", "--overwrite")  # fmt: skip
    assert "is an image, not an earlier output" in line
    assert (folder / "001A02.JPG").read_bytes() == before


def test_demo_outputs_of_one_run_never_share_a_path(tmp_path, capsys):
    photos = photo_folder(tmp_path / "photos", ["photo", "photo.png"])
    out = tmp_path / "out"
    demo_script.main(["--image_dir", str(photos), "--model", "dlib-models",
                      "--output_dir", str(out), "--no-display"])  # fmt: skip
    table = pd.read_csv(out / "predictions.csv")
    assert sorted(table["file"]) == ["photo", "photo.png"]
    written = sorted(path.name for path in out.iterdir())
    assert written == ["photo-1.png", "photo.png", "predictions.csv", "predictions.json"]
    # A second run into the folder never replaces the first one's results unasked.
    before = (out / "predictions.csv").read_bytes()
    line = refusal(capsys, demo_script.main, "--image_dir", photos, "--model", "dlib-models",
                   "--output_dir", out, "--no-display")  # fmt: skip
    assert "exist from an earlier run; pass --overwrite" in line
    assert (out / "predictions.csv").read_bytes() == before
    demo_script.main(["--image_dir", str(photos), "--model", "dlib-models",
                      "--output_dir", str(out), "--no-display", "--overwrite"])  # fmt: skip
    assert (out / "predictions.csv").read_bytes() == before  # the same run, the same table


def test_demo_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    """coll/x.png is the user's own photo; coll/sub/x.png's annotated copy would take its name."""
    photo_folder(tmp_path / "coll" / "sub", ["x.png"])
    own = tmp_path / "coll" / "x.png"
    own.write_bytes(b"the user's own photo")
    args = ["--image_dir", tmp_path / "coll" / "sub", "--model", "dlib-models",
            "--output_dir", tmp_path / "coll", "--no-display"]  # fmt: skip
    for extra in [[], ["--overwrite"]]:
        line = refusal(capsys, demo_script.main, *args, *extra)
        assert f"{own} is not an output of an earlier demo run there" in line, line
    assert own.read_bytes() == b"the user's own photo"
    # A table the user wrote, even one naming x.png, does not make x.png the demo's either.
    (tmp_path / "coll" / "predictions.csv").write_text("file,frame,status\nx.png,,ok\n")
    assert "is not an output" in refusal(capsys, demo_script.main, *args, "--overwrite")
    assert own.read_bytes() == b"the user's own photo"


def test_a_second_evaluation_keeps_the_first_report(tmp_path, capsys):
    photo_folder(tmp_path / "img")
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n0,40,a.png\n")
    out = tmp_path / "report"
    args = ["--csv", csv, "--root", tmp_path / "img", "--model", "dlib-models",
            "--output_dir", out]  # fmt: skip
    evaluate_script.main([str(arg) for arg in args])
    summary = (out / "dlib-models" / "summary.json").read_bytes()
    assert "holds an earlier report; pass --overwrite" in refusal(
        capsys, evaluate_script.main, *args
    )
    assert (out / "dlib-models" / "summary.json").read_bytes() == summary
    # The second --model is one more model, not the first one's replacement: one model twice
    # would write its report over itself, so it is refused before any prediction.
    line = refusal(capsys, evaluate_script.main, *args, "--model", "dlib-models", "--overwrite")
    assert line.startswith("error: dlib-models is named twice: each model is evaluated once")
    assert (out / "dlib-models" / "summary.json").read_bytes() == summary


# Hangs and crashes ------------------------------------------------------------------------------


def test_names_that_are_not_utf8_are_read_by_demo_and_annotate(tmp_path, run_script):
    photos = photo_folder(tmp_path / "photos", ["good.png"])
    shutil.copy(photos / "good.png", os.path.join(os.fsencode(photos), b"\xff\xfebad.png"))
    result = run_script("demo.py", "--image_dir", photos, "--model", "dlib-models",
                        "--output_dir", tmp_path / "out", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    table = records.read_csv_table(tmp_path / "out" / "predictions.csv")
    assert (table["faces"] == "1").all() and len(table) == 2
    assert sorted(table["file"]) == ["good.png", os.fsdecode(b"\xff\xfebad.png")]  # exact
    result = run_script("annotate.py", photos, "--output", tmp_path / "t.csv", "--workers", "2",
                        "--model", "dlib-models", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert pd.read_csv(tmp_path / "t.csv")["status"].tolist() == ["ok", "ok"]


def die(item):
    os._exit(1)  # a worker killed mid-task, as the OOM killer or a crashing library does


def test_a_dead_worker_fails_the_run_in_one_line():
    with (
        pytest.raises(UserError, match="a worker process died while testing"),
        jobs.failing_in_one_line("testing"),
        jobs.WorkerPool(2, int, (0,)) as pool,
    ):
        list(pool.map(die, range(4)))


def test_more_workers_than_the_memory_holds_are_capped_with_a_note(capsys):
    """annotate.py --workers 10000 would start one process per image of a part."""
    with jobs.WorkerPool(10_000_000) as pool:
        assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3]
    note = capsys.readouterr().out
    assert "workers, not 10000000: each takes about" in note and "GB are free" in note


def test_negative_camera_index_and_out_of_range_numbers_are_refused(capsys):
    assert "--camera: must be 0 or more" in refusal(capsys, demo_script.main, "--camera", "-1")
    assert "--upsample: must be 3 at most" in refusal(
        capsys, demo_script.main, "--upsample", "8", "--image_dir", REPO / "examples"
    )
    assert "model.img_size must be 2048 at most, not 100000" in refusal(
        capsys, cache_script.main, "--csv", "x.csv", "--root", ".", "--output_dir", "c",
        "model.img_size=100000",
    )  # fmt: skip
    assert "could not be converted to Integer" in refusal(
        capsys, cache_script.main, "--csv", "x.csv", "--root", ".", "--output_dir", "c",
        "model.img_size=big",
    )  # fmt: skip
    assert "--port: must be 65535 at most" in refusal(capsys, serve_script.main, "--port", "70000")


# Read-only and impossible output folders --------------------------------------------------------


def test_unwritable_output_places_are_one_line_before_any_model_loads(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    place = blocker / "out"
    photos = photo_folder(tmp_path / "photos")
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n0,40,a.png\n")
    model = tmp_path / "m.keras"
    model.write_text("not a model: the refusal comes before it would load")
    cases = [
        (demo_script.main, ["--image_dir", photos, "--output_dir", place, "--no-display"]),
        (annotate_script.main, [photos, "--output", place / "t.csv"]),
        (cache_script.main, ["--csv", csv, "--root", photos, "--output_dir", place]),
        (landmarks_script.main, ["--csv", csv, "--root", photos, "--output", place / "e.csv"]),
        (
            create_db_script.main,
            ["--db", "fgnet", "--data_dir", photos, "--output", place / "f.csv"],
        ),  # fmt: skip
        (export_script.main, ["--weight_file", model, "--output_dir", place]),
        (train_script.check_output_dir, [f"train.output_dir={place}"]),
    ]
    for main, argv in cases:
        line = refusal(capsys, main, *argv)
        assert str(blocker) in line and ("is a file" in line or "does not exist" in line), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: the test "
                    "above makes the place unwritable with a file instead")  # fmt: skip
def test_a_read_only_folder_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    line = refusal(capsys, demo_script.main, "--image_dir", REPO / "examples",
                   "--output_dir", locked / "out", "--no-display")  # fmt: skip
    assert line.startswith(f"error: cannot write {locked}/out")


# Boxes and labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("box", ["nan,76,266,167", "266,167,175,76", "175,76,175,167", "x,1,2,3"])
def test_broken_boxes_are_refused_where_labels_are_read(tmp_path, capsys, box):
    photo_folder(tmp_path / "img")
    csv = tmp_path / "labels.csv"
    csv.write_text(f"genders,ages,img_paths,x_min,y_min,x_max,y_max\n0,40,a.png,{box}\n")
    for main, argv in [
        (
            evaluate_script.main,
            [
                "--csv",
                csv,
                "--root",
                tmp_path / "img",
                "--model",
                "dlib-models",
                "--output_dir",
                tmp_path / "r",
            ],
        ),  # fmt: skip
        (
            cache_script.main,
            ["--csv", csv, "--root", tmp_path / "img", "--output_dir", tmp_path / "c"],
        ),  # fmt: skip
    ]:
        assert "have a face box that is not a box" in refusal(capsys, main, *argv)


def evaluate_boxes(folder, second_box: str) -> pd.DataFrame:
    """evaluate.py with dlib-models on a.png (a box on its face) and b.png (`second_box`)."""
    photo_folder(folder / "img", ["a.png", "b.png"])
    csv = folder / "labels.csv"
    csv.write_text("genders,ages,img_paths,x_min,y_min,x_max,y_max\n"
                   f"0,40,a.png,60,40,200,200\n0,40,b.png,{second_box}\n")  # fmt: skip
    evaluate_script.main([str(arg) for arg in ["--csv", csv, "--root", folder / "img",
                          "--model", "dlib-models", "--output_dir", folder / "r"]])  # fmt: skip
    return pd.read_csv(folder / "r" / "dlib-models" / "predictions.csv")


def test_a_box_off_the_image_is_counted_not_cropped(tmp_path, capsys):
    table = evaluate_boxes(tmp_path, "900,900,990,990")
    csv = tmp_path / "labels.csv"
    assert table["file"].tolist() == ["a.png"]
    assert (
        "b.png (face box outside the image)"
        in (tmp_path / "r" / "dlib-models" / "summary.json").read_text()
    )
    cache_script.main([str(arg) for arg in ["--csv", csv, "--root", tmp_path / "img",
                       "--output_dir", tmp_path / "c", "--workers", "1"]])  # fmt: skip
    assert "skipped 1 faces: box outside the image" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "c" / "labels.csv")["ages"].tolist() == [40]


def test_label_csvs_round_ages_and_keep_subjects_as_text(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths,subject\n0,25.7,a.png,001\n-1,3.2,b.png,012\n")
    frame = labels.read_labels_csv(csv)
    assert frame["ages"].tolist() == [26, 3]
    assert frame["subject"].tolist() == ["001", "012"]


def test_fgnet_names_with_full_width_digits_or_bytes_count_as_malformed(tmp_path, run_script):
    folder = photo_folder(tmp_path / "FGNET", ["001A02.JPG", "001A0２.JPG"])
    shutil.copy(folder / "001A02.JPG", os.path.join(os.fsencode(folder), b"002A1\xff.JPG"))
    result = run_script("create_db.py", "--db", "fgnet", "--data_dir", folder,
                        "--output", tmp_path / "f.csv")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dropped        2 (malformed file name)" in result.stdout
    assert pd.read_csv(tmp_path / "f.csv")["img_paths"].tolist() == ["001A02.JPG"]


# Silently wrong ---------------------------------------------------------------------------------


def test_a_cut_jpeg_is_unreadable_not_half_a_face(tmp_path):
    ok, data = cv2.imencode(".jpg", small_astronaut())
    (tmp_path / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    (tmp_path / "whole.jpg").write_bytes(data.tobytes())
    assert images.read_image(tmp_path / "cut.jpg") is None
    assert images.read_image(tmp_path / "whole.jpg").shape == (256, 256, 3)


def test_each_image_once_through_symlink_loops_and_linked_folders(tmp_path):
    root = photo_folder(tmp_path / "d", ["a.png"])
    photo_folder(tmp_path / "elsewhere", ["b.png"])
    (root / "loop").symlink_to(root)
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    base, names = annotation.list_images(str(root))
    assert names == ["a.png", "linked/b.png"]
    os.chdir(tmp_path)
    _, globbed = annotation.list_images("d/**/*.png")
    assert globbed == ["d/a.png"]  # a glob's ** does not enter linked folders; a folder input does
    # A glob's ** through two link loops ends, with each file once.
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    photo_folder(root / "sub", ["c.png"])
    assert sorted(annotation.list_images("d/**/*.png")[1]) == ["d/a.png", "d/sub/c.png"]
    absolute = annotation.list_images(f"{root}/**/c.png")[1]
    assert absolute == [f"{root}/sub/c.png"]
    # A CSV naming one file two ways lists it once, as it first spelt it; a missing one stays.
    pd.DataFrame({"img_paths": ["./a.png", "a.png", "x/../a.png", "gone.png"]}).to_csv("l.csv")
    assert annotation.list_images("l.csv", root)[1] == ["./a.png", "gone.png"]


def test_the_face_cache_keys_on_the_pixels_not_the_path_string(tmp_path):
    box = np.zeros(4, np.float32)
    for root in ("one", "two"):
        photo_folder(tmp_path / root)
    (tmp_path / "two" / "a.png").write_bytes(cv2.imencode(".png", small_astronaut(128))[1])
    names = {face_cache.cached_name(tmp_path / root / "a.png", box, 0.4, 280)
             for root in ("one", "two")}  # fmt: skip
    assert len(names) == 2
    same = face_cache.cached_name(tmp_path / "one" / "a.png", box, 0.4, 280)
    assert same in names  # the same file gives the same name: resuming still works


def test_landmarks_refuse_parts_of_another_root(tmp_path, capsys):
    photo_folder(tmp_path / "one")
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n0,40,a.png\n")
    output = tmp_path / "eyes.csv"
    settings = {"--root": str((tmp_path / "other").resolve()), "CSV (its rows)": 1,
                "--chunk_size": 1000, "--detector": "hog", "--upsample": 9}  # fmt: skip
    jobs.Parts(output, settings, overwrite=False)  # what a killed run on another root left
    line = refusal(capsys, landmarks_script.main, "--csv", csv, "--root", tmp_path / "one",
                   "--output", output)  # fmt: skip
    assert "holds an unfinished run made with another " in line
    for changed in ("--root", "--upsample", "CSV (its rows)"):
        assert changed in line, line


# Messages ---------------------------------------------------------------------------------------


def test_wrong_kinds_of_path_say_what_they_are(tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "garbage.keras").write_bytes(b"garbage")
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    line = refusal(capsys, demo_script.main, "--image_dir", tmp_path / "clip.mp4")
    assert line.endswith("clip.mp4 is not a folder")
    line = refusal(capsys, evaluate_script.main, "--csv", tmp_path, "--root", tmp_path)
    assert "is a folder, not a CSV file" in line
    with pytest.raises(UserError, match="not a .keras archive"):
        KerasEstimator.load(tmp_path / "garbage.keras")
    line = refusal(capsys, export_script.main, "--weight_file", tmp_path / "m.onnx")
    assert "is an exported model already" in line


def test_offline_the_default_model_says_so_in_one_line(tmp_path, offline, capsys, monkeypatch):
    for name, value in offline.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    estimator = load_estimator()
    assert estimator.name == "dlib-models"
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: cannot download"), lines


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_dropped_unless_asked_for():
    code = "import age_gender.models.model"
    ours = ("TF_CPP_MIN_LOG_LEVEL", "AGE_GENDER_QUIET_TENSORFLOW")  # as a user's shell has it
    environment = {key: value for key, value in os.environ.items() if key not in ours}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=environment, cwd=REPO)  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    asked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**environment, "TF_CPP_MIN_LOG_LEVEL": "0"}, cwd=REPO)  # fmt: skip
    assert asked.returncode == 0 and asked.stderr != ""


# The server -------------------------------------------------------------------------------------


def grey16_png() -> bytes:
    grey = cv2.cvtColor(small_astronaut(320), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    ok, data = cv2.imencode(".png", grey)
    return data.tobytes()


def mpo() -> bytes:
    from PIL import Image

    first = Image.fromarray(cv2.cvtColor(small_astronaut(320), cv2.COLOR_BGR2RGB))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[first])
    return buffer.getvalue()


@pytest.mark.slow
def test_uploads_decode_as_the_commands_read_files():
    limits = Limits()
    decoded = serving.decode_upload(grey16_png(), limits)
    direct = cv2.cvtColor(small_astronaut(320), cv2.COLOR_BGR2GRAY)
    assert abs(float(decoded.mean()) - float(direct.mean())) < 2  # not almost white
    assert serving.decode_upload(mpo(), limits).shape == (320, 320, 3)


@pytest.fixture(scope="module")
def guarded_server():
    with running_server("--model", "dlib-models", "--token", "T", "--body_timeout", "1",
                        "--max_upload_mb", "1", "--header_timeout", "1",
                        "--max_connections", "4") as url:  # fmt: skip
        yield url


@pytest.mark.slow
def test_a_non_ascii_token_is_401_not_500(guarded_server):
    answer = httpx.get(f"{guarded_server}/v1/model",
                       headers={"Authorization": "Bearer é".encode()})  # fmt: skip
    assert answer.status_code == 401


@pytest.mark.slow
def test_a_stalled_body_is_answered_408_and_frees_the_connection(guarded_server):
    import socket

    host, port = guarded_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T\r\n"
            b"Content-Type: image/png\r\nContent-Length: 5000\r\n\r\n0123456789"
        )
        answer = client.recv(200)
    assert answer.startswith(b"HTTP/1.1 408")


def closed_by_server(client) -> bool:
    try:
        return client.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_idle_connections_neither_lock_others_out_nor_stay_open(guarded_server):
    """8 connections beyond the limit of 4: half send part of a request's headers, half send
    nothing; another client is still served, and the server closes them all within its header
    deadline (1 s)."""
    import socket

    host, port = guarded_server.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(8)]
    try:
        for client in idle[::2]:
            client.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        assert httpx.get(f"{guarded_server}/healthz", timeout=5).status_code == 200
        started = time.monotonic()
        assert all(closed_by_server(client) for client in idle)
        assert time.monotonic() - started < 5
    finally:
        for client in idle:
            client.close()


@pytest.mark.slow
def test_a_body_arriving_slowly_but_steadily_is_not_called_stalled(guarded_server):
    """The body deadline (1 s) is a stall timer: 12 bytes, one every 0.3 s, take 3.6 s."""
    import socket

    host, port = guarded_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T\r\n"
            b"Content-Type: image/png\r\nContent-Length: 12\r\n\r\n"
        )
        for byte in b"not an image":
            time.sleep(0.3)
            client.sendall(bytes([byte]))
        answer = client.recv(200)
    assert answer.startswith(b"HTTP/1.1 4") and not answer.startswith(b"HTTP/1.1 408"), answer


@pytest.mark.slow
def test_python_clients_read_the_413_of_a_large_upload(guarded_server):
    request = urllib.request.Request(
        f"{guarded_server}/v1/predict", data=b"\x00" * 3_000_000, method="POST",
        headers={"Authorization": "Bearer T", "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with pytest.raises(urllib.error.HTTPError) as refused:
        direct.open(request, timeout=30)
    assert refused.value.code == 413


@pytest.mark.slow
def test_serving_beyond_loopback_warns_without_tls_and_serves_https(tmp_path, capsys):
    args = serve_script.parse_args(["--host", "0.0.0.0"])
    serve_script.check_tls(args)
    assert "over plain HTTP" in capsys.readouterr().out
    assert "needs both" in refusal(capsys, serve_script.main, "--ssl-certfile", tmp_path / "c")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the HTTPS half needs it to make a certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", tmp_path / "key.pem",
                    "-out", tmp_path / "cert.pem"], check=True, capture_output=True)  # fmt: skip
    with running_server("--model", "dlib-models", "--ssl-certfile", tmp_path / "cert.pem",
                        "--ssl-keyfile", tmp_path / "key.pem") as url:  # fmt: skip
        assert url.startswith("https://")
        assert httpx.get(f"{url}/healthz", verify=False).json() == {"status": "ok"}


def test_rows_without_a_box_are_whole_images_and_repeated_images_resume(tmp_path):
    assert len(evaluate_boxes(tmp_path, ",,,")) == 2
    parts = jobs.Parts(tmp_path / "eyes.csv", {"run": 1}, overwrite=False)
    parts.write(0, pd.DataFrame({"img_paths": ["a.png", "a.png", "b.png"]}))  # two faces of a
    assert parts.done(0, ["a.png", "a.png", "b.png"], "img_paths")


def test_two_runs_on_one_output_and_damaged_parts(tmp_path):
    output = tmp_path / "faces.csv"
    first = jobs.Parts(output, {"run": 1}, overwrite=False)
    with pytest.raises(UserError, match="another run is writing"):
        jobs.Parts(output, {"run": 1}, overwrite=False)
    first.write(0, pd.DataFrame({"file": ["a.png"]}))
    first.path(0).write_bytes(first.path(0).read_bytes()[:20])  # cut by a full disk, say
    assert not first.done(0, ["a.png"], "file")  # done again, not a traceback
    first.release()
    (first.folder / "settings.json").write_text("{not json")
    with pytest.raises(UserError, match="unfinished run made with settings it cannot read"):
        jobs.Parts(output, {"run": 1}, overwrite=False)
    assert jobs.Parts(output, {"run": 1}, overwrite=True).done(0, ["a.png"], "file") is False


def test_what_a_hostile_user_tried_next(tmp_path, capsys):
    strip = np.zeros((1, 300000, 3), np.uint8)  # a 370-byte PNG that broke the detector's resize
    assert detection.DetectorSpec().build().detect(strip) == []
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n1,25,\n")
    line = refusal(capsys, evaluate_script.main, "--csv", csv, "--root", tmp_path,
                   "--model", "dlib-models")  # fmt: skip
    assert "1 rows have no img_paths (e.g. row 2)" in line
    assert "--camera: must be 9999 at most" in refusal(
        capsys, demo_script.main, "--camera", "99999999999999999999999"
    )
    both = refusal(
        capsys, demo_script.main, "--image_dir", REPO / "examples", "--model", "dlib-models",
        "--weight_file", tmp_path / "x.keras", "--output_dir", tmp_path / "o",
    )  # fmt: skip
    assert "--model" in both and "--weight_file" in both and not (tmp_path / "o").exists()
    csv.write_text("genders,ages,img_paths\n1,25,a.png\n")
    assert "dlib-models is named twice" in refusal(
        capsys, evaluate_script.main, "--csv", csv, "--root", tmp_path,
        "--model", "dlib-models", "dlib-models", "--output_dir", tmp_path / "r",
    )  # fmt: skip
    (tmp_path / "x.keras").write_bytes(b"")  # refused before it is read
    (tmp_path / "link.keras").symlink_to(tmp_path / "x.keras")  # one file, two names
    os.link(tmp_path / "x.keras", tmp_path / "hard.keras")
    for other in ("link.keras", "hard.keras"):
        assert f"{tmp_path}/{other} is {tmp_path}/x.keras again: each model is evaluated" in (
            refusal(capsys, evaluate_script.main, "--csv", csv, "--root", tmp_path,
                    "--weight_file", tmp_path / "x.keras", tmp_path / other, "--output_dir",
                    tmp_path / "r")
        )  # fmt: skip
    long_name = tmp_path / f"{'a' * 300}.keras"  # over the 255 bytes file systems take a name
    for main, options in [(evaluate_script.main, ["--csv", csv, "--root", tmp_path]),
                          (demo_script.main, ["--image_dir", REPO / "examples"])]:  # fmt: skip
        line = refusal(capsys, main, *options, "--weight_file", long_name)
        assert line.endswith("a.keras: a name in it is longer than the file system takes; choose "
                             "a shorter one")  # fmt: skip
    (tmp_path / "loop.keras").symlink_to(tmp_path / "loop.keras")  # a link to itself
    assert "loop.keras" in refusal(capsys, evaluate_script.main, "--csv", csv, "--root",
                                   tmp_path, "--weight_file", tmp_path / "loop.keras")  # fmt: skip
    assert "Could not override 'nonexist_key'" in refusal(
        capsys, train_script.check_output_dir, "nonexist_key=3"
    )


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_workers_die_with_a_killed_run(tmp_path):
    code = (
        "import os, time\nfrom age_gender import jobs\n"
        "with jobs.WorkerPool(1, int, (0,)) as pool:\n"
        "    print(pool.executor.submit(os.getpid).result(), flush=True)  # the worker's own\n"
        "    pool.executor.submit(time.sleep, 600)\n"
        "    time.sleep(600)\n"
    )  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: no clean-up runs in the parent
    parent.wait()
    for _ in range(50):
        if not alive(worker):
            break
        time.sleep(0.1)
    else:
        os.kill(worker, 9)
        raise AssertionError("the worker outlived its killed parent")


def test_gifs_are_read_and_heic_is_listed_unreadable_by_the_one_rule(tmp_path):
    from PIL import Image

    Image.fromarray(small_astronaut()[..., ::-1]).save(tmp_path / "a.gif")
    (tmp_path / "b.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [path.name for path in images.image_files(tmp_path)] == ["a.gif", "b.heic"]
    assert images.read_image(tmp_path / "a.gif").shape == (256, 256, 3)
    assert images.read_image(tmp_path / "b.heic") is None


def test_two_demo_runs_into_one_folder_are_refused(tmp_path, capsys):
    from age_gender import jobs
    from age_gender.cli import demo as demo_command

    (tmp_path / "out").mkdir()
    held = jobs.Lock(tmp_path / "out", name=None)  # as a first run holds it
    try:
        message = refusal(capsys, demo_command.main, "--image_dir", REPO / "examples",
                          "--output_dir", tmp_path / "out", "--model", "dlib-models")  # fmt: skip
    finally:
        held.close()
    assert "another run is writing" in message
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_an_empty_group_a_file_for_a_folder_and_a_momentum_above_1_are_refused(tmp_path, capsys):
    from age_gender.cli import evaluate_appa_real
    from age_gender.config import check_ranges, compose_config

    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths\n1,25,a.png\n")
    assert "argument --group_by: is empty: give a column of the CSV" in refusal(
        capsys, evaluate_script.main, "--csv", csv, "--root", tmp_path, "--group_by", " "
    )
    assert "is a file, not the data set's folder" in refusal(
        capsys, evaluate_appa_real.main, "--appa_dir", csv
    )
    with pytest.raises(UserError, match=r"model.batchnorm_momentum must be a number in \[0, 1\)"):
        check_ranges(compose_config(["model.batchnorm_momentum=1.5"]))
    with pytest.raises(UserError, match=r"train.momentum must be a number in \[0, 1\), not nan"):
        check_ranges(compose_config(["train.momentum=nan"]))
    for added in ("+foo=1", "+train.nope=3"):  # Hydra would add them, and nothing reads them
        with pytest.raises(UserError, match="the schema has no key"):
            compose_config([added])
    assert compose_config(["++train.lr=0.1", "+experiment=utkface_cpu"]).train.lr == 0.1


def test_a_refused_cache_leaves_no_empty_folder(tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths,x_min,y_min,x_max,y_max\n1,25,a.jpg,1,1,9,9\n")
    line = refusal(capsys, cache_script.main, "--csv", csv, "--root", tmp_path,
                   "--output_dir", tmp_path / "new" / "cache", "--workers", "1")  # fmt: skip
    assert "no face of the 1 rows could be cached" in line
    assert not (tmp_path / "new").exists()


def test_a_cache_of_crops_without_boxes_is_refused(tmp_path):
    frame = pd.DataFrame({"genders": [1], "ages": [25], "img_paths": ["a.jpg"]})
    with pytest.raises(UserError, match="no row has a face box: these are face crops"):
        face_cache.cache_faces(frame, tmp_path, tmp_path / "cache", CropSpec(32), 1.0, 1)


def test_a_nul_in_a_path_short_erasing_ranges_and_a_colliding_group_are_one_line(tmp_path, capsys):
    from age_gender.config import check_ranges, compose_config

    csv = tmp_path / "labels.csv"
    csv.write_text("genders,ages,img_paths,gender\n1,25,a\x00b.png,M\n")
    with pytest.raises(UserError, match="1 img_paths hold a NUL byte .e.g. row 2."):
        labels.read_labels_csv(csv)
    assert images.read_image(tmp_path / "a\x00b.png") is None  # the API's reader: not a crash
    for value in ("[0.5]", "[]", "[0.1,0.2,0.3]"):
        with pytest.raises(UserError, match="train.random_erasing.area must be .low, high."):
            check_ranges(compose_config([f"train.random_erasing.area={value}"]))
    csv.write_text("genders,ages,img_paths,gender\n1,25,a.png,M\n")
    assert "--group_by gender: a column of the predictions table" in refusal(
        capsys, evaluate_script.main, "--csv", csv, "--root", tmp_path, "--group_by", "gender",
        "--model", "dlib-models", "--output_dir", tmp_path / "out",
    )  # fmt: skip


def test_an_image_gone_after_the_check_names_itself(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    frame = pd.DataFrame({"genders": [1], "ages": [25], "img_paths": ["a.jpg"]})
    data = dataset.make_dataset(dataset.drop_unreadable(frame, tmp_path), tmp_path, CropSpec(8), 1)
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(Exception, match=r"cannot read \S*a\.jpg"):  # what training turns into
        next(iter(data))  # one line (training.train)


def test_training_reads_every_format_the_commands_read(tmp_path):
    """TIFF and PPM were skipped by training's TensorFlow check, and a PNG with bytes after its
    end (some writers append them) was called truncated by every command."""
    image = small_astronaut(64)
    for name in ("a.tiff", "b.ppm"):
        cv2.imwrite(str(tmp_path / name), image)
    png = cv2.imencode(".png", image)[1].tobytes()
    (tmp_path / "c.png").write_bytes(png + b"appended by another program " * 4)
    (tmp_path / "cut.png").write_bytes(png[: len(png) - 20])
    assert images.read_image(tmp_path / "c.png") is not None
    assert images.read_image(tmp_path / "cut.png") is None
    names = ["a.tiff", "b.ppm", "c.png", "cut.png"]
    frame = pd.DataFrame({"genders": [1] * 4, "ages": [25] * 4, "img_paths": names})
    kept = dataset.drop_unreadable(frame, tmp_path)
    assert kept["img_paths"].tolist() == names[:3]
    crops = next(iter(dataset.make_dataset(kept, tmp_path, CropSpec(16), 3)))[0].numpy()
    assert crops.shape == (3, 16, 16, 3) and crops.std() > 0


def test_a_run_where_no_image_can_be_read_fails(tmp_path, capsys):
    """A wrong folder or --root is an error, not a table of `unreadable` rows and exit 0."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_text("not an image")
    (folder / "b.jpg").write_bytes(b"")
    line = refusal(capsys, demo_script.main, "--image_dir", folder, "--model", "dlib-models",
                   "--output_dir", tmp_path / "out", "--no-display")  # fmt: skip
    assert "none of the 2 images in the folder could be read" in line
    line = refusal(capsys, annotate_script.main, folder, "--output", tmp_path / "t.csv",
                   "--model", "dlib-models", "--workers", "1")  # fmt: skip
    assert "none of the 2 images could be read (e.g. a.png)" in line
    assert (pd.read_csv(tmp_path / "t.csv")["status"] == "unreadable").all()


def test_refusals_show_names_that_are_not_utf8_as_tables_do(tmp_path, capsys):
    line = refusal(capsys, demo_script.main, "--image_dir", tmp_path / NOT_UTF8,
                   "--model", "dlib-models", "--no-display")  # fmt: skip
    assert "\ufffd\ufffdbad.png does not exist" in line and "\udcff" not in line
