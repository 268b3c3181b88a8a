"""demo.py end to end: folders with awkward images, a video, the fallback, bad input."""

import json
import os

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, kill_when, refusal, user_error
from PIL import Image

from age_gender.cli import demo as demo_cli
from age_gender.data.records import read_csv_table

ASTRONAUT = REPO / "examples" / "astronaut.png"
PREDICTIONS = ["predictions.csv", "predictions.json"]


def awkward_folder(folder):
    """The astronaut as grey, RGBA, 16-bit and EXIF-rotated files, the cat, and a text file."""
    folder.mkdir()
    bgr = cv2.imread(str(ASTRONAUT))
    cv2.imwrite(str(folder / "grey.jpg"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep.png"), bgr.astype(np.uint16) * 257)
    # Stored lying on its side; EXIF orientation 6 says "rotate 90 degrees clockwise to view".
    lying = Image.open(ASTRONAUT).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    lying.save(folder / "rotated.jpg", exif=exif.tobytes())
    (folder / "cat.png").write_bytes((REPO / "examples" / "cat_no_face.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")


def test_image_folder_writes_images_csv_and_json(tmp_path, run_script):
    awkward_folder(tmp_path / "in")
    result = run_script(
        "demo.py", "--image_dir", tmp_path / "in", "--output_dir", tmp_path / "out",
        "--model", "dlib-models", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 1 files that are not readable images" in result.stdout
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["file"].tolist() == ["alpha.png", "cat.png", "deep.png", "grey.jpg", "rotated.jpg"]
    faces = table.set_index("file")
    assert faces.loc["cat.png", "faces"] == 0 and pd.isna(faces.loc["cat.png", "age"])
    for name in ("alpha.png", "deep.png", "grey.jpg", "rotated.jpg"):
        assert faces.loc[name, "faces"] == 1, name
        assert 15 < faces.loc[name, "age"] < 70 and faces.loc[name, "gender"] in ("F", "M")
    assert faces.loc["alpha.png", "gender"] == "F"
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [row["file"] for row in rows] == table["file"].tolist()
    assert rows[0]["x_min"] == faces.loc["alpha.png", "x_min"]
    annotated = cv2.imread(str(tmp_path / "out" / "alpha.png"))
    original = cv2.imread(str(ASTRONAUT))
    assert annotated.shape == original.shape and (annotated != original).any()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["alpha.png", "cat.png", "deep.png", "grey.jpg", "rotated.jpg", "predictions.csv",
         "predictions.json"]
    )  # fmt: skip


def test_video_is_annotated_frame_by_frame(tmp_path, run_script):
    image = cv2.imread(str(ASTRONAUT))
    writer = cv2.VideoWriter(
        str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512)
    )
    for shift in range(8):
        writer.write(np.roll(image, 3 * shift, axis=1))
    writer.release()
    result = run_script(
        "demo.py", "--video", tmp_path / "clip.mp4", "--output_dir", tmp_path / "out",
        "--model", "dlib-models", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["frame"].tolist() == list(range(8)) and (table["faces"] == 1).all()
    assert table["x_min"].is_monotonic_increasing  # the face moves 21 px right
    assert 10 <= table["x_min"].iloc[-1] - table["x_min"].iloc[0] <= 35
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


def test_no_network_falls_back_to_dlib_models(tmp_path, run_script, http_server):
    url, _, _ = http_server
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--output_dir", tmp_path / "out",
        cwd=tmp_path, env={"AGE_GENDER_WEIGHTS_URL": url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HTTP 404" in result.stdout and "using the bundled dlib-models networks" in result.stdout
    assert (tmp_path / "out" / "astronaut.png").exists()
    assert not (tmp_path / "pretrained_models" / "EfficientNetB3_224_weights.11-3.44.hdf5").exists()


def test_headless_without_output_dir_writes_to_output(tmp_path, run_script):
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--model", "dlib-models",
        cwd=tmp_path, env={"DISPLAY": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no display: writing results to output/" in result.stdout
    assert (tmp_path / "output" / "predictions.csv").exists()


@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path, run_script):
    def error(*args):
        result = run_script("demo.py", "--output_dir", tmp_path / "out", *args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        return result.stderr.strip().splitlines()[-1]

    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert "cannot open video" in error(
        "--video", tmp_path / "broken.mp4", "--model", "dlib-models"
    )
    assert "cannot open camera 97" in error("--camera", "97", "--model", "dlib-models")
    (tmp_path / "w.keras").write_bytes(b"garbage")
    examples = REPO / "examples"
    broken = error("--weight_file", tmp_path / "w.keras", "--image_dir", examples)
    assert "is not a model saved by train.py" in broken
    assert "image folder" in error("--image_dir", tmp_path / "nowhere", "--model", "dlib-models")


def copy_examples(folder):
    folder.mkdir()
    for path in (REPO / "examples").iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_outputs_never_replace_inputs(tmp_path, run_script):
    photos = tmp_path / "photos"
    originals = copy_examples(photos)
    (tmp_path / "link").symlink_to(photos)
    for output in (photos, tmp_path / "link"):
        result = run_script(
            "demo.py", "--image_dir", photos, "--output_dir", output, "--model", "dlib-models",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: writing {output}/astronaut.png and 1 more would replace an input file; "
            "choose another output folder"
        ]
        assert {path.name: path.read_bytes() for path in photos.iterdir()} == originals

    image = cv2.imread(str(ASTRONAUT))
    writer = cv2.VideoWriter(
        str(photos / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (512, 512)
    )
    writer.write(image)
    writer.release()
    video = (photos / "clip.mp4").read_bytes()
    result = run_script(
        "demo.py", "--video", photos / "clip.mp4", "--output_dir", photos, "--model", "dlib-models",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "would replace an input file" in result.stderr
    assert (photos / "clip.mp4").read_bytes() == video


def test_any_readable_name_is_written_and_finished_results_survive(tmp_path, run_script):
    photos = tmp_path / "photos"
    photos.mkdir()
    png = ASTRONAUT.read_bytes()
    (photos / "a.png").write_bytes(png)
    (photos / "photo").write_bytes(png)  # no suffix: OpenCV reads it, but has no writer for it
    cv2.imwrite(str(photos / "x.jpg"), cv2.imread(str(ASTRONAUT)))
    (photos / "x.jpg").rename(photos / "x.jpeg.bak")
    (photos / "zz").write_bytes(png)  # renamed too, and done last
    out = tmp_path / "out"
    (out / "zz.png").mkdir(parents=True)  # a folder where zz's annotated copy must go
    result = run_script(
        "demo.py",
        "--image_dir",
        photos,
        "--output_dir",
        out,
        "--model",
        "dlib-models",
        "--overwrite",
        cwd=tmp_path,
    )
    assert user_error(result).startswith(f"error: cannot write {out}/zz.png")
    assert cv2.imread(str(out / "photo.png")) is not None
    assert cv2.imread(str(out / "x.jpeg.bak.png")) is not None
    # The images done before the failure keep their predictions; zz, whose copy could not be
    # written, has none.
    table = pd.read_csv(out / "predictions.csv")
    assert table["file"].tolist() == ["a.png", "photo", "x.jpeg.bak"]
    assert (table["faces"] == 1).all()
    assert json.loads((out / "predictions.json").read_text())[1]["file"] == "photo"


def test_bad_options_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for args, message in [
        (["--output_dir", tmp_path / "file"], f"error: output folder {tmp_path}/file is a file"),
        (["--margin", "-0.6"], "error: argument --margin: must be 0 or more, not -0.6"),
        (["--margin", "nan"], "error: argument --margin: 'nan' is not a number"),
        (["--upsample", "-1"], "error: argument --upsample: must be 0 or more, not -1"),
        (["--min_face", "-3"], "error: argument --min_face: must be 0 or more, not -3"),
    ]:
        line = refusal(capsys, demo_cli.main, "--image_dir", REPO / "examples", "--model",
                       "dlib-models", *args)  # fmt: skip
        assert line.startswith(message)


def test_an_unreadable_image_gets_its_row(tmp_path):
    (tmp_path / "in").mkdir()
    data = (REPO / "examples" / "astronaut.png").read_bytes()
    (tmp_path / "in" / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "in" / "whole.png").write_bytes(data)
    demo_cli.main(["--image_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                   "--model", "dlib-models", "--no-display"])  # fmt: skip
    table = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("file")
    assert table.loc["cut.png", "status"] == "unreadable"
    assert table.loc["whole.png", "status"] == "ok" and table.loc["whole.png", "faces"] == 1


def test_a_name_that_is_not_utf8_is_recorded_with_its_bytes(tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    name = os.fsdecode(b"ph\xffoto.png")
    (photos / name).write_bytes(ASTRONAUT.read_bytes())
    arguments = ["--image_dir", photos, "--output_dir", out, "--model", "dlib-models",
                 "--no-display"]  # fmt: skip
    demo_cli.main(list(map(str, arguments)))
    table = read_csv_table(out / "predictions.csv")
    assert table["file"].tolist() == [name] and table["faces"].tolist() == ["1"]
    assert (out / "predictions.csv").read_bytes().splitlines()[1].startswith(b"ph\xffoto.png,")
    # JSON text is UTF-8: there the name is shown as a terminal shows it.
    assert json.loads((out / "predictions.json").read_text())[0]["file"] == "ph\ufffdoto.png"
    # The table names the copy the run wrote: a second run knows it as its own.
    line = refusal(capsys, demo_cli.main, *arguments)
    assert line.startswith(f"error: {out}/ph\ufffdoto.png and 2 more exist from an earlier run")
    demo_cli.main([*map(str, arguments), "--overwrite"])
    assert sorted(os.listdir(out)) == sorted([name, "predictions.csv", "predictions.json"])


def test_a_run_stopped_early_knows_the_renamed_copies_it_wrote(tmp_path, capsys):
    """`photo` (no suffix) gets its copy as photo-1.png beside photo.png's: the copies that
    keep their names are written first, so a table cut short by a failure still says which
    renamed copies are the demo's."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for name in ("photo", "photo.png", "zz"):
        (photos / name).write_bytes(ASTRONAUT.read_bytes())
    arguments = ["--image_dir", photos, "--output_dir", out, "--model", "dlib-models",
                 "--no-display", "--overwrite"]  # fmt: skip
    (out / "photo.png").mkdir(parents=True)  # where photo.png's copy must go
    assert refusal(capsys, demo_cli.main, *arguments).startswith(
        f"error: cannot write {out}/photo.png"
    )
    (out / "photo.png").rmdir()
    (out / "zz.png").mkdir()  # where the copy of zz, the last image, must go
    assert refusal(capsys, demo_cli.main, *arguments).startswith(
        f"error: cannot write {out}/zz.png"
    )
    assert read_csv_table(out / "predictions.csv")["file"].tolist() == ["photo.png", "photo"]
    (out / "zz.png").rmdir()
    demo_cli.main(list(map(str, arguments)))
    assert sorted(os.listdir(out)) == [
        "photo-1.png", "photo.png", "predictions.csv", "predictions.json", "zz.png"
    ]  # fmt: skip
    assert read_csv_table(out / "predictions.csv")["file"].tolist() == ["photo.png", "photo", "zz"]


def test_a_killed_run_is_redone_with_overwrite(tmp_path, capsys):
    """SIGKILL leaves annotated copies and no table: the run listed each copy as it wrote it,
    so a new run knows them as the demo's (asks for --overwrite, then replaces them), while a
    file of the user's where the killed run had not yet written is still refused."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for number in range(12):
        (photos / f"{number:02}.png").write_bytes(ASTRONAUT.read_bytes())
    arguments = ["--image_dir", photos, "--output_dir", out, "--model", "dlib-models",
                 "--no-display"]  # fmt: skip
    kill_when([REPO / "demo.py", *arguments], (out / "00.png").exists, "no copy was written")
    assert not (out / "predictions.csv").exists() and not (out / "11.png").exists()

    line = refusal(capsys, demo_cli.main, *arguments)
    assert line.startswith(f"error: {out}/00.png") and "pass --overwrite" in line
    (out / "11.png").write_bytes(b"mine")
    line = refusal(capsys, demo_cli.main, *arguments, "--overwrite")
    assert line.startswith(f"error: {out}/11.png is not an output of an earlier demo run")
    (out / "11.png").unlink()
    demo_cli.main([*map(str, arguments), "--overwrite"])
    assert len(read_csv_table(out / "predictions.csv")) == 12
    assert sorted(os.listdir(out)) == [f"{number:02}.png" for number in range(12)] + PREDICTIONS


def test_the_list_of_unfinished_copies_reads_only_names_and_keeps_what_no_table_lists(tmp_path):
    from age_gender.apps import demo
    from age_gender.schema import COLUMNS

    lines = ['["x"]', '"../up.png"', '"/abs.png"', '"kept.png"', '"done.png"', "null", "3", '"cu']
    (tmp_path / demo.UNFINISHED).write_text("\n".join(lines))
    assert demo.unfinished_outputs(tmp_path) == {tmp_path / "kept.png", tmp_path / "done.png"}
    # annotate.py writes the output schema's CSV too, never the JSON: that is not the demo's.
    row = dict.fromkeys(COLUMNS, "") | {"file": "done.png", "status": "ok", "faces": "0"}
    pd.DataFrame([row], columns=COLUMNS).to_csv(tmp_path / "predictions.csv", index=False)
    assert demo.finished_outputs(tmp_path) == set()
    # A run lists its tables before it starts: one killed between the two left a list that
    # names them, and only the names whose files are there.
    for name in ("kept.png", "done.png"):
        (tmp_path / name).write_bytes(b"a copy")
    demo.start_unfinished(tmp_path)
    tables = {tmp_path / "predictions.csv", tmp_path / "predictions.json"}
    assert (
        demo.unfinished_outputs(tmp_path) == {tmp_path / "kept.png", tmp_path / "done.png"} | tables
    )
    (tmp_path / "predictions.json").write_text("[]")  # the run's tables are written whole
    demo.finish_unfinished(tmp_path)  # they name done.png, not kept.png
    assert demo.unfinished_outputs(tmp_path) == {tmp_path / "kept.png"}
    (tmp_path / "kept.png").unlink()  # gone: the list forgets it
    demo.finish_unfinished(tmp_path)
    assert not (tmp_path / demo.UNFINISHED).exists()


def test_a_video_into_a_folder_whose_name_is_not_utf8_is_one_line(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    out = os.path.join(os.fsencode(tmp_path), b"out\xff")  # OpenCV's writer crashed on it
    line = refusal(capsys, demo_cli.main, "--video", clip, "--output_dir", os.fsdecode(out),
                   "--model", "dlib-models")  # fmt: skip
    assert line.endswith(
        "OpenCV cannot write a video into a folder whose name is not UTF-8; "
        "choose another --output_dir"
    )
