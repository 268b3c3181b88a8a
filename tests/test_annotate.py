"""annotate.py: every image once (with the reason when it has no face), the three inputs and
three formats, resume after SIGKILL, and Ray on a local instance giving the local engine's rows."""

import os
from pathlib import Path

import cv2
import pandas as pd
import pytest
from conftest import REPO, kill_when, user_error
from support import synthetic

ASTRONAUT = REPO / "examples" / "astronaut.png"


def read_table(path):
    reader = {".parquet": pd.read_parquet, ".csv": pd.read_csv}.get(path.suffix)
    return reader(path) if reader else pd.read_json(path, lines=True)


def photos(folder, count, seed=0):
    portrait = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    return synthetic.write_face_photos(folder, portrait, count, seed)


@pytest.mark.slow
def test_every_image_once_from_a_folder_a_csv_or_a_glob(tmp_path, run_script):
    images = tmp_path / "in"
    (images / "sub").mkdir(parents=True)
    (images / "astronaut.png").write_bytes(ASTRONAUT.read_bytes())
    (images / "sub" / "copy.jpg").write_bytes(ASTRONAUT.read_bytes())  # a PNG named .jpg
    (images / "cat.png").write_bytes((REPO / "examples" / "cat_no_face.png").read_bytes())
    (images / "broken.jpg").write_bytes(b"not a JPEG")
    (images / "notes.txt").write_text("not an image")
    model = ("--model", "dlib-models")

    folder = run_script("annotate.py", images, "--output", tmp_path / "folder.parquet", *model)
    assert folder.returncode == 0, folder.stderr[-3000:]
    assert "4 images: 2 faces, 1 without a face, 1 unreadable" in folder.stdout
    table = read_table(tmp_path / "folder.parquet").set_index("file")
    assert table.index.tolist() == ["astronaut.png", "broken.jpg", "cat.png", "sub/copy.jpg"]
    assert table["status"].tolist() == ["ok", "unreadable", "no face", "ok"]
    assert table.loc["cat.png", ["width", "height", "faces"]].tolist() == [451, 300, 0]
    face = table.loc["astronaut.png"]
    assert (face["width"], face["height"], face["faces"], face["face"]) == (512, 512, 1, 0)
    assert face["score"] > 0.5 and face["gender"] == "F" and 15 < face["age"] < 70
    assert table.loc["sub/copy.jpg"].equals(face)
    assert pd.isna(table.loc["broken.jpg", "width"]) and pd.isna(table.loc["cat.png", "age"])
    assert not list(tmp_path.glob(".*parts"))  # merged and removed

    # A CSV names images more than once and one that is missing: each is listed once.
    names = ["sub/copy.jpg", "cat.png", "sub/copy.jpg", "gone.jpg"]
    pd.DataFrame({"img_paths": names, "ages": 30}).to_csv(tmp_path / "labels.csv", index=False)
    csv = run_script(
        "annotate.py", tmp_path / "labels.csv", "--root", images, "--output",
        tmp_path / "from_csv.jsonl", *model,
    )  # fmt: skip
    assert csv.returncode == 0, csv.stderr[-3000:]
    listed = read_table(tmp_path / "from_csv.jsonl")
    assert listed["file"].tolist() == ["sub/copy.jpg", "cat.png", "gone.jpg"]  # the CSV's order
    assert listed["status"].tolist() == ["ok", "no face", "unreadable"]
    assert listed["age"].iloc[0] == face["age"]

    matched = run_script(
        "annotate.py", "in/**/*.jpg", "--output", tmp_path / "glob.csv", *model, cwd=tmp_path
    )
    assert matched.returncode == 0, matched.stderr[-3000:]
    globbed = read_table(tmp_path / "glob.csv")
    assert globbed["file"].tolist() == ["in/broken.jpg", "in/sub/copy.jpg"]
    assert globbed["age"].iloc[1] == face["age"]

    again = run_script("annotate.py", images, "--output", tmp_path / "glob.csv", *model)
    assert "exists; pass --overwrite" in user_error(again)
    assert read_table(tmp_path / "glob.csv").equals(globbed)


@pytest.mark.slow
def test_a_killed_run_resumes_and_lists_every_image_once(tmp_path, run_script):
    photos(tmp_path / "photos", 24)
    output = tmp_path / "faces.parquet"
    arguments = [REPO / "annotate.py", tmp_path / "photos", "--output", output,
                 "--model", "dlib-models", "--part_size", "2", "--workers", "1"]  # fmt: skip
    parts = tmp_path / ".faces.parquet.parts"

    def whole_parts() -> bool:
        return len(list(parts.glob("[0-9]*.pkl"))) >= 2

    kill_when(arguments, whole_parts, "no part was written")  # the run and its workers
    assert not output.exists()
    for part in parts.glob("[0-9]*.pkl"):  # complete or absent
        pd.read_pickle(part)

    other = run_script(*map(str, arguments[:-4]), "--part_size", "3", "--workers", "1")
    assert "holds an unfinished run made with another --part_size" in user_error(other)
    resumed = run_script(*map(str, arguments))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = int(resumed.stdout.split("resuming: ")[1].split()[0])
    assert 4 <= done < 24
    table = read_table(output)
    whole = tmp_path / "whole.parquet"
    uninterrupted = run_script(*map(str, arguments[:2]), "--output", whole, "--model",
                               "dlib-models", "--workers", "2")  # fmt: skip
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert table.drop_duplicates("file")["file"].tolist() == [f"{i:05d}.jpg" for i in range(24)]
    assert (table.groupby("file")["face"].count() == table.groupby("file")["faces"].first()).all()
    assert table["faces"].sum() > 24 and not parts.exists()
    pd.testing.assert_frame_equal(table, read_table(whole))


@pytest.mark.slow
def test_ray_on_a_local_instance_gives_the_local_engines_rows(tmp_path, run_script, varied_model):
    pytest.importorskip("ray")
    photos(tmp_path / "photos", 8, seed=1)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 cut")
    model = ("--weight_file", varied_model / "tiny.keras", "--workers", "2")
    local = run_script("annotate.py", tmp_path / "photos", "--output", tmp_path / "local.parquet",
                       *model, "--batch_size", "4")  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    distributed = run_script(
        "annotate.py", tmp_path / "photos", "--output", tmp_path / "ray.parquet", *model,
        "--engine", "ray", env={"RAY_ADDRESS": "", "RAY_NODE_IP_ADDRESS": "127.0.0.1"},
    )  # fmt: skip
    assert distributed.returncode == 0, distributed.stderr[-3000:]
    expected = read_table(tmp_path / "local.parquet")
    table = read_table(tmp_path / "ray.parquet").sort_values(["file", "face"], na_position="first")
    table = table.reset_index(drop=True)
    assert expected["age"].std() > 1  # faces get their own ages: the comparison means something
    assert table["status"].value_counts().to_dict() == {"ok": len(expected) - 1, "unreadable": 1}
    pd.testing.assert_frame_equal(
        table.drop(columns=["age", "age_std"]), expected.drop(columns=["age", "age_std"])
    )
    assert (table["age"] - expected["age"]).abs().max() <= 0.01


def test_bad_input_is_one_line(tmp_path, run_script):
    (tmp_path / "empty").mkdir()
    (tmp_path / "labels.csv").write_text("path,age\na.jpg,3\n")
    (tmp_path / "fake_ray" / "ray").mkdir(parents=True)  # Ray not installed
    (tmp_path / "fake_ray" / "ray" / "__init__.py").write_text("raise ImportError('no ray')")

    def error(*args, env=None):
        return user_error(run_script("annotate.py", *args, "--model", "dlib-models", env=env))

    out = ("--output", tmp_path / "out.csv")
    assert "is not a folder, a CSV file or a glob" in error(tmp_path / "missing", *out)
    assert "no images in" in error(tmp_path / "empty", *out)
    assert "needs an img_paths column" in error(tmp_path / "labels.csv", *out)
    assert "--root applies to a CSV input" in error(tmp_path / "empty", "--root", tmp_path, *out)
    assert "name the output .parquet, .csv, .jsonl" in error(tmp_path, "--output", "x.txt")
    assert "does not exist" in error(tmp_path, "--output", tmp_path / "no" / "x.csv")
    assert "--engine ray writes Parquet" in error(tmp_path, *out, "--engine", "ray")
    no_ray = error(tmp_path, "--output", tmp_path / "o.parquet", "--engine", "ray",
                   env={"PYTHONPATH": str(tmp_path / "fake_ray")})  # fmt: skip
    assert "pip install 'age-gender[scale]'" in no_ray
    assert "--workers" in error(tmp_path, *out, "--workers", "0")


@pytest.mark.slow
def test_a_csv_naming_an_image_by_bytes_that_are_not_utf8_finds_it(tmp_path, run_script):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / os.fsdecode(b"ph\xffoto.png")).write_bytes(ASTRONAUT.read_bytes())
    (tmp_path / "labels.csv").write_bytes(b"img_paths,ages\nph\xffoto.png,30\n")
    result = run_script(
        "annotate.py", tmp_path / "labels.csv", "--root", tmp_path / "in", "--output",
        tmp_path / "faces.jsonl", "--model", "dlib-models", "--workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = read_table(tmp_path / "faces.jsonl")
    assert table["file"].tolist() == ["ph\ufffdoto.png"]  # JSON text is UTF-8
    assert table["status"].tolist() == ["ok"] and table["faces"].tolist() == [1]


def killed_after_start(arguments: list, parts: Path) -> None:
    """Runs `python arguments...` and kills it (with its workers) once its parts folder holds
    its settings: what a run killed at any moment leaves."""
    kill_when(arguments, (parts / "settings.json").exists, "the run never started its parts")


@pytest.mark.slow
def test_a_resume_with_another_upsample_names_the_option(tmp_path, run_script):
    photos(tmp_path / "photos", 4)
    output = tmp_path / "faces.csv"
    arguments = [REPO / "annotate.py", tmp_path / "photos", "--output", output,
                 "--model", "dlib-models", "--part_size", "1", "--workers", "1"]  # fmt: skip
    killed_after_start(arguments, tmp_path / ".faces.csv.parts")
    line = user_error(run_script(*map(str, arguments), "--upsample", "0"))
    assert f"{tmp_path}/.faces.csv.parts holds an unfinished run made with another --upsample;" in (
        line
    )


@pytest.mark.slow
def test_landmarks_resumes_by_options_and_names_by_bytes(tmp_path, run_script):
    """landmarks.py runs on the same job engine: a resume refused names the option changed, and
    a name that is not UTF-8 gets its eyes and keeps its bytes in the output."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "up.png").write_bytes(ASTRONAUT.read_bytes())
    (tmp_path / "labels.csv").write_bytes(b"genders,ages,img_paths\n0,40,up.png\n")
    output = tmp_path / "eyes.csv"
    arguments = ["landmarks.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "img",
                 "--output", output, "--workers", "1"]  # fmt: skip
    killed_after_start([REPO / arguments[0], *arguments[1:]], tmp_path / ".eyes.csv.parts")
    line = user_error(run_script(*arguments, "--upsample", "0"))
    assert "holds an unfinished run made with another --upsample;" in line

    (tmp_path / "img" / os.fsdecode(b"ph\xffoto.png")).write_bytes(ASTRONAUT.read_bytes())
    (tmp_path / "labels.csv").write_bytes(b"genders,ages,img_paths\n0,40,ph\xffoto.png\n")
    result = run_script(*arguments, "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eyes found for 1 of 1 faces" in result.stdout
    assert output.read_bytes().splitlines()[1].startswith(b"0,40,ph\xffoto.png,")
