"""The benchmarks' refusals: a wrong argument stops in one line before any work (a run that
trains for an hour must not fail at its end, nor leave a half-made work folder)."""

import shutil

import pytest
from conftest import REPO, user_error


@pytest.mark.parametrize(("arguments", "message"), [
    (["--data", "faces", "--composites", "labels.csv"],
     "--composites: output folder labels.csv is a file"),
    (["--data", "faces", "--scene_backgrounds", "empty"],
     "--scene_backgrounds: no background photos in empty"),
    (["--data", "faces", "train.epochs=0"], "train.epochs must be a whole number of 1 or more"),
    (["--data", "photos"], "--data photos: no image there is named as UTKFace's are"),
    (["--data", "faces", "--weight_file", "no.keras"], "weight file no.keras not found"),
    (["--data", "faces", "--weight_file", "/dev/null"], "weight file /dev/null is not a file"),
])  # fmt: skip
def test_accuracy_refuses_before_any_work(tmp_path, run_script, arguments, message):
    for folder, name in [("faces", "30_1_0_20170109150557335.jpg"), ("photos", "holiday.jpg")]:
        (tmp_path / folder).mkdir()
        shutil.copy(REPO / "examples" / "astronaut.png", tmp_path / folder / name)
    (tmp_path / "empty").mkdir()
    (tmp_path / "labels.csv").write_text("")
    before = sorted(tmp_path.iterdir())
    result = run_script("bench/accuracy.py", *arguments, "--work", "work", cwd=tmp_path)
    assert message in user_error(result)
    assert sorted(tmp_path.iterdir()) == before
