"""Evaluation metrics by hand, and evaluate_appa_real.py / evaluate.py end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from age_gender import evaluation, model, synthetic


def test_metrics_against_hand_computed_values():
    predicted, true = [10, 22, 35, 71], [12, 20, 30, 80]
    assert evaluation.mean_absolute_error(predicted, true) == pytest.approx((2 + 2 + 5 + 9) / 4)
    assert evaluation.cumulative_score(predicted, true, 5) == pytest.approx(3 / 4)
    assert evaluation.gender_accuracy([0, 1, 1], [0, 1, 0]) == pytest.approx(2 / 3)
    expected = np.mean([1 - math.exp(-(2**2) / (2 * 2**2)), 1 - math.exp(0)])
    assert evaluation.epsilon_error([10, 20], [12, 20], [2, 3]) == pytest.approx(expected)
    groups = evaluation.mae_by_age_group(predicted, true)
    assert list(groups) == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    assert groups["10-19"] == {"n": 1, "mae": 2.0} and groups["70+"] == {"n": 1, "mae": 9.0}
    assert groups["0-9"] == {"n": 0, "mae": None} and groups["30-39"]["mae"] == 5.0


def test_appa_real_report_matches_its_predictions(tmp_path, run_script):
    appa = tmp_path / "appa-real-release"
    synthetic.write_appa_real(appa, "valid", 12, size=48, seed=2)
    (appa / "valid" / "000003.jpg_face.jpg").write_bytes(b"broken")
    model.build_model("MobileNetV3Small", 32, None).save(tmp_path / "tiny.keras")
    result = run_script(
        "evaluate_appa_real.py", "--appa_dir", appa, "--weight_file", "tiny.keras",
        "--model", "dlib-models", "--output_dir", tmp_path / "out", "--batch_size", "5",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "out" / "tiny.keras"
    table = pd.read_csv(report / "predictions.csv")
    summary = json.loads((report / "summary.json").read_text())
    assert len(table) == 11 and summary["n"] == 12
    assert summary["unreadable"] == ["valid/000003.jpg_face.jpg"]
    mae_real = (table["predicted_age"] - table["true_age"]).abs().mean()
    mae_apparent = (table["predicted_age"] - table["apparent_age_avg"]).abs().mean()
    assert summary["mae"] == pytest.approx(mae_real)
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("MAE vs real age")).split()
    assert float(row[4]) == pytest.approx(mae_real, abs=0.005)
    row = next(line for line in lines if line.startswith("MAE vs apparent age")).split()
    assert float(row[4]) == pytest.approx(mae_apparent, abs=0.005)
    assert lines[1].split() == ["tiny.keras", "dlib-models"]
    for name in ("predicted_vs_real.png", "mae_by_age_group.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "dlib-models" / "summary.json").exists()


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


def test_missing_data_and_unknown_columns_are_one_line(tmp_path, run_script):
    result = run_script("evaluate_appa_real.py", "--model", "dlib-models", cwd=tmp_path)
    assert result.returncode == 2 and "./download.sh --appa" in result.stderr
    appa = tmp_path / "appa"
    appa.mkdir()
    (appa / "gt_avg_valid.csv").write_text("name,age\na.jpg,3\n")
    result = run_script("evaluate_appa_real.py", "--appa_dir", appa, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lacks the columns file_name" in result.stderr
