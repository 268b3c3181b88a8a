"""Evaluation metrics by hand, and evaluate_appa_real.py / evaluate.py end to end."""

import json
import math
import os

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import user_error
from support import synthetic

from age_gender import plots
from age_gender.apps import evaluation
from age_gender.cli import evaluate, evaluate_appa_real
from age_gender.faces.crops import CropSpec
from age_gender.models import model
from age_gender.schema import EYE_COLUMNS


def test_metrics_against_hand_computed_values():
    predicted, true = [10, 22, 35, 71], [12, 20, 30, 80]
    assert evaluation.mean_absolute_error(predicted, true) == pytest.approx((2 + 2 + 5 + 9) / 4)
    assert evaluation.cumulative_score(predicted, true, 5) == pytest.approx(3 / 4)
    assert evaluation.gender_accuracy(["F", "M", "M"], [0, 1, 0]) == pytest.approx(2 / 3)
    expected = np.mean([1 - math.exp(-(2**2) / (2 * 2**2)), 1 - math.exp(0)])
    assert evaluation.epsilon_error([10, 20], [12, 20], [2, 3]) == pytest.approx(expected)
    groups = evaluation.mae_by_age_group(predicted, true)
    assert list(groups) == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    assert groups["10-19"] == {"n": 1, "mae": 2.0} and groups["70+"] == {"n": 1, "mae": 9.0}
    assert groups["0-9"] == {"n": 0, "mae": None} and groups["30-39"]["mae"] == 5.0


def test_age_std_coverage_groups_and_their_gap_by_hand(tmp_path):
    predicted, std, true = [10, 20, 30, 40], [2, 2, 4, 1], [11, 24, 39, 40]
    low, high = [9, 17, 30, 39], [11, 23, 40, 41]
    table = pd.DataFrame({
        "age": predicted, "age_std": std, "true_age": true, "age_low": low, "age_high": high,
        "gender": ["F", "M", "M", "F"], "true_gender": [0, 1, 0, 0],
        "race": ["White", "White", "Black", None],
    })  # fmt: skip
    coverage = evaluation.spread_coverage(table)
    assert coverage == {"within_1_std": 2 / 4, "within_2_std": 3 / 4, "within_interval": 3 / 4}
    groups = evaluation.mae_by_group(table, "race")
    assert groups["White"] == {"n": 2, "mae": 2.5, "cs5": 1.0, "gender_accuracy": 1.0}
    assert groups["Black"]["gender_accuracy"] == 0.0 and groups["(none)"]["n"] == 1
    gaps = evaluation.group_gaps(groups)  # the group without a value is not one of them
    assert gaps == {"mae": 9 - 2.5, "gender_accuracy": 1.0}
    plots.plot_reliability(table, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_appa_real_report_matches_its_predictions(tmp_path, capsys, monkeypatch):
    """evaluate_appa_real.py's steps in this process (TensorFlow is loaded here already)."""
    appa = tmp_path / "appa-real-release"
    synthetic.write_appa_real(appa, "valid", 12, size=48, seed=2)
    (appa / "valid" / "000003.jpg_face.jpg").write_bytes(b"broken")
    model.build_model("MobileNetV3Small", CropSpec(32), None).save(tmp_path / "tiny.keras")
    monkeypatch.chdir(tmp_path)
    evaluate_appa_real.main([
        "--appa_dir", str(appa), "--weight_file", "tiny.keras", "--model", "dlib-models",
        "--output_dir", str(tmp_path / "out"), "--batch_size", "5",
    ])  # fmt: skip
    said = capsys.readouterr().out
    report = tmp_path / "out" / "tiny.keras"
    table = pd.read_csv(report / "predictions.csv")
    summary = json.loads((report / "summary.json").read_text(), parse_constant=strict_json)
    assert len(table) == 11 and summary["n"] == 12
    assert summary["unreadable"] == ["valid/000003.jpg_face.jpg"]
    mae_real = (table["age"] - table["true_age"]).abs().mean()
    mae_apparent = (table["age"] - table["apparent_age_avg"]).abs().mean()
    assert summary["mae"] == pytest.approx(mae_real)
    lines = said.splitlines()
    row = next(line for line in lines if line.startswith("MAE vs real age")).split()
    assert float(row[4]) == pytest.approx(mae_real, abs=0.005)
    row = next(line for line in lines if line.startswith("MAE vs apparent age")).split()
    assert float(row[4]) == pytest.approx(mae_apparent, abs=0.005)
    assert lines[1].split() == ["tiny.keras", "dlib-models"]
    for name in ("predicted_vs_real.png", "mae_by_age_group.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "dlib-models" / "summary.json").exists()


def strict_json(constant):
    raise AssertionError(f"{constant} is not JSON")


def test_several_faces_per_image_are_each_their_own_row(tmp_path, monkeypatch):
    """IMDB-Clean lists each face of an image on its own row, with its box (evaluate.py's steps
    in this process)."""
    frame = synthetic.write_disk_dataset(tmp_path / "images", 4, size=64)
    rows = pd.concat([frame, frame]).reset_index(drop=True)
    rows["ages"] = [10, 20, 30, 40, 50, 60, 70, 80]
    rows["x_min"], rows["y_min"] = [4] * 4 + [30] * 4, [4] * 4 + [30] * 4
    rows["x_max"], rows["y_max"] = [34] * 4 + [60] * 4, [34] * 4 + [60] * 4
    rows.to_csv(tmp_path / "faces.csv", index=False)
    model.build_model("MobileNetV3Small", CropSpec(32), None).save(tmp_path / "tiny.keras")
    monkeypatch.chdir(tmp_path)
    evaluate.main([
        "--csv", str(tmp_path / "faces.csv"), "--root", str(tmp_path / "images"),
        "--weight_file", "tiny.keras", "--output_dir", str(tmp_path / "out"), "--batch_size", "3",
    ])  # fmt: skip
    table = pd.read_csv(tmp_path / "out" / "tiny.keras" / "predictions.csv")
    summary = json.loads((tmp_path / "out" / "tiny.keras" / "summary.json").read_text())
    assert summary["n"] == summary["evaluated"] == len(table) == 8
    assert table["true_age"].tolist() == rows["ages"].tolist()
    assert table[["file", "x_min", "y_max"]].equals(rows[["img_paths", "x_min", "y_max"]].set_axis(
        ["file", "x_min", "y_max"], axis=1))  # fmt: skip
    assert summary["mae"] == pytest.approx((table["age"] - table["true_age"]).abs().mean())


def test_any_labelled_csv(tmp_path, run_script):
    frame = synthetic.write_disk_dataset(tmp_path / "images", 6, size=48)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    result = run_script(
        "evaluate.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--model", "dlib-models", "--output_dir", tmp_path / "out", "--detect", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "dlib-models" / "summary.json").read_text())
    assert summary["n"] == 6 and "mae_apparent" not in summary
    # Disks are no faces: each is predicted on the whole image and listed, not dropped.
    assert summary["evaluated"] == 6 and sorted(summary["no_face_found"]) == sorted(
        frame["img_paths"]
    )


def test_a_file_named_by_bytes_that_are_not_utf8_is_evaluated(tmp_path, run_script):
    frame = synthetic.write_disk_dataset(tmp_path / "images", 2, size=48)
    odd = os.fsdecode(b"d\xffisk.png")
    (tmp_path / "images" / frame["img_paths"][0]).rename(tmp_path / "images" / odd)
    lines = ["genders,ages,img_paths", f"{frame['genders'][0]},{frame['ages'][0]},{odd}",
             f"{frame['genders'][1]},{frame['ages'][1]},{frame['img_paths'][1]}"]  # fmt: skip
    (tmp_path / "labels.csv").write_bytes(os.fsencode("\n".join(lines) + "\n"))
    result = run_script(
        "evaluate.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--model", "dlib-models", "--output_dir", tmp_path / "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "dlib-models" / "summary.json").read_text())
    assert summary["evaluated"] == 2  # the report names it as text: d\ufffdisk.png


def test_a_fifo_named_as_an_image_is_unreadable_not_waited_on(tmp_path, run_script):
    """Reading a FIFO waits for a writer that never comes: the reader takes regular files only
    (the run's timeout fails this test, rather than hanging the suite, if it ever waits)."""
    frame = synthetic.write_disk_dataset(tmp_path / "images", 2, size=48)
    os.mkfifo(tmp_path / "images" / "pipe.png")
    rows = pd.concat([frame, frame[:1].assign(img_paths="pipe.png")])
    rows.to_csv(tmp_path / "labels.csv", index=False)
    result = run_script(
        "evaluate.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--model", "dlib-models", "--output_dir", tmp_path / "out", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "dlib-models" / "summary.json").read_text())
    assert summary["unreadable"] == ["pipe.png"] and summary["evaluated"] == 2


def test_missing_data_and_unknown_columns_are_one_line(tmp_path, run_script):
    result = run_script("evaluate_appa_real.py", "--model", "dlib-models", cwd=tmp_path)
    assert result.returncode == 2 and "./download.sh --appa" in result.stderr
    appa = tmp_path / "appa-real-release"
    synthetic.write_appa_real(appa, "valid", 2, size=32)
    result = run_script("evaluate_appa_real.py", "--appa_dir", appa, "--split", "test")
    assert result.returncode == 2 and "or pass --appa_dir" in result.stderr
    appa = tmp_path / "appa"
    appa.mkdir()
    (appa / "gt_avg_valid.csv").write_text("name,age\na.jpg,3\n")
    result = run_script("evaluate_appa_real.py", "--appa_dir", appa, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lacks the columns file_name" in result.stderr


def test_refused_evaluations_are_one_line_and_write_nothing(tmp_path, run_script):
    frame = synthetic.write_disk_dataset(tmp_path / "images", 3, size=32)
    frame.to_csv(tmp_path / "labels.csv", index=False)

    def error(*args):
        result = run_script(
            "evaluate.py", "--csv", tmp_path / "labels.csv", "--model", "dlib-models",
            "--output_dir", tmp_path / "out", *args, cwd=tmp_path,
        )  # fmt: skip
        return user_error(result)

    for batch_size in ("0", "-1", "x"):
        assert "argument --batch_size" in error(
            "--root", tmp_path / "images", "--batch_size", batch_size
        )
    (tmp_path / "broken").mkdir()
    for name in frame["img_paths"]:
        (tmp_path / "broken" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "broken" / name).write_bytes(b"not an image")
    assert "none of the 3 images could be read" in error("--root", tmp_path / "broken")
    (tmp_path / "file").write_text("")
    message = error("--root", tmp_path / "images", "--output_dir", tmp_path / "file")
    assert "is a file" in message
    assert not (tmp_path / "out").exists()


def test_unknown_genders_and_mae_per_group(tmp_path, run_script):
    frame = synthetic.write_disk_dataset(tmp_path / "images", 8, size=48)
    frame["genders"] = [0, 1, -1, -1, 0, 1, -1, 0]
    frame["subject"] = ["001", "001", "002", "002", "002", "003", "003", ""]
    frame["ages"] = [3, 15, 15, 27, 44, 68, 70, 95]
    frame.to_csv(tmp_path / "labels.csv", index=False)
    result = run_script(
        "evaluate.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--model", "dlib-models", "--output_dir", tmp_path / "out", "--group_by", "subject",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "dlib-models" / "summary.json").read_text())
    table = pd.read_csv(tmp_path / "out" / "dlib-models" / "predictions.csv")
    known = table[table["true_gender"] >= 0]
    assert summary["gender_known"] == 5 == len(known)
    assert summary["gender_accuracy"] == pytest.approx(
        ((known["gender"] == "M").astype(int) == known["true_gender"]).mean()
    )
    groups = summary["mae_by_group"]
    subjects = ["001", "002", "003"]  # as FG-NET writes them, not read as numbers
    # The row without a subject is counted as a group of its own, not left out.
    assert sorted(groups) == ["(none)", *subjects]
    assert [groups[g]["n"] for g in [*subjects, "(none)"]] == [2, 3, 2, 1]
    errors = (table["age"] - table["true_age"]).abs()
    assert groups["002"]["mae"] == pytest.approx(errors[2:5].mean())
    assert "MAE subject 002" in result.stdout and "gender subject 001" in result.stdout
    assert "MAE gap, worst subject - best" in result.stdout
    # The label columns group by their own names too.
    evaluate.main(["--csv", str(tmp_path / "labels.csv"), "--root", str(tmp_path / "images"),
                   "--model", "dlib-models", "--output_dir", str(tmp_path / "by_gender"),
                   "--group_by", "genders"])  # fmt: skip
    by_gender = json.loads((tmp_path / "by_gender" / "dlib-models" / "summary.json").read_text())
    assert sorted(by_gender["mae_by_group"]) == ["-1", "0", "1"]
    # age_group is no label column: each face's decade of true age.
    evaluate.main(["--csv", str(tmp_path / "labels.csv"), "--root", str(tmp_path / "images"),
                   "--model", "dlib-models", "--output_dir", str(tmp_path / "by_age"),
                   "--group_by", "age_group"])  # fmt: skip
    by_age = json.loads((tmp_path / "by_age" / "dlib-models" / "summary.json").read_text())
    decades = {name: group["n"] for name, group in by_age["mae_by_group"].items()}
    assert decades == {"0-9": 1, "10-19": 2, "20-29": 1, "40-49": 1, "60-69": 1, "70+": 2}
    missing = run_script(
        "evaluate.py", "--csv", tmp_path / "labels.csv", "--root", tmp_path / "images",
        "--group_by", "person", cwd=tmp_path,
    )  # fmt: skip
    assert "--group_by person: the labels have no such column" in user_error(missing)


def test_a_rows_eyes_turn_its_face_upright_as_in_training(tmp_path, varied_model):
    from age_gender.estimators.presets import load_estimator

    estimator = load_estimator(varied_model / "tiny.keras")  # upright: the eyes turn the crop
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", image[..., ::-1])[1].tobytes())
    box, eyes = (40, 20, 120, 100), (60.0, 50.0, 100.0, 70.0)  # turned about 27 degrees
    rows = pd.DataFrame({"img_paths": ["a.png"] * 3, "x_min": 40.0, "y_min": 20.0,
                         "x_max": 120.0, "y_max": 100.0})  # fmt: skip
    rows.loc[2, ["x_min", "y_min", "x_max", "y_max"]] = np.nan  # a crop: the image is the face
    rows[EYE_COLUMNS] = [eyes, [np.nan] * 4, eyes]
    predictions, _, _ = evaluation.predict_rows(estimator, rows, tmp_path)
    everything = (0, 0, 160, 120)
    turned, level, whole, whole_level = (
        estimator.predict_inputs([estimator.inputs(image, [face], [face_eyes])])[0]
        for face, face_eyes in ((box, eyes), (box, None), (everything, eyes), (everything, None))
    )
    assert predictions["age"].tolist() == pytest.approx(
        [turned.age, level.age, whole.age], abs=1e-3
    )
    assert abs(turned.age - level.age) > 1e-3 and abs(whole.age - whole_level.age) > 1e-3


def test_two_models_whose_reports_would_share_a_folder_are_refused(tmp_path, varied_model):
    """`m1/x_y.keras` and `m1_x/y.keras` both write their report to `m1_x_y.keras/`."""
    from age_gender.errors import UserError
    from age_gender.estimators.presets import load_estimator

    models = []
    for path in (tmp_path / "m1" / "x_y.keras", tmp_path / "m1_x" / "y.keras"):
        path.parent.mkdir()
        path.symlink_to(varied_model / "tiny.keras")
        models.append(load_estimator(path))
    with pytest.raises(UserError, match="would share the report folder .*: copy one to another"):
        evaluation.check_reports(tmp_path / "reports", models, overwrite=True)
    # A path longer than a file name may be (255 bytes) still gets a folder of its own.
    deep = tmp_path / ("d" * 120) / ("e" * 120) / "model.keras"
    deep.parent.mkdir(parents=True)
    deep.symlink_to(varied_model / "tiny.keras")
    folder = evaluation.report_folder(tmp_path / "reports", load_estimator(deep))
    assert len(folder.name.encode()) <= 200 and folder.name.endswith("e_model.keras")
    evaluation.check_reports(tmp_path / "reports", [load_estimator(deep)], overwrite=False)
