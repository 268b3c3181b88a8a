"""The benchmarks' refusals: a wrong argument stops in one line before any work (a run that
trains for an hour must not fail at its end, nor leave a half-made work folder)."""

import shutil

import pytest
from conftest import REPO, user_error


@pytest.mark.parametrize(("arguments", "message"), [
    (["--data", "faces", "--composites", "labels.csv"],
     "--composites: output folder labels.csv is a file"),
    (["--data", "faces", "--scene_backgrounds", "faces"],
     "--scene_backgrounds: no background photos in faces"),
    (["--data", "faces", "train.epochs=0"], "train.epochs must be a whole number of 1 or more"),
    (["--data", "photos"], "no rows of photos are left after filtering"),  # no UTKFace names
])  # fmt: skip
def test_accuracy_refuses_before_any_work(tmp_path, run_script, arguments, message):
    (tmp_path / "faces").mkdir()
    (tmp_path / "photos").mkdir()
    shutil.copy(REPO / "examples" / "astronaut.png", tmp_path / "photos" / "holiday.png")
    (tmp_path / "labels.csv").write_text("")
    result = run_script("bench/accuracy.py", *arguments, "--work", "work", cwd=tmp_path)
    assert message in user_error(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["faces", "labels.csv", "photos"]
