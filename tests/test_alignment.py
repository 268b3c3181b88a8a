"""Alignment by the eyes: landmarks.py (parallel, resumable), the same aligned crop in training
(TensorFlow) and at inference (OpenCV), a turned face levelled, and an aligned model end to end."""

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SMALL_MODEL, user_error

from age_gender import jobs
from age_gender.config import compose_config
from age_gender.data import label_eyes, labels
from age_gender.errors import UserError
from age_gender.estimators.base import decode
from age_gender.faces import eye_finder
from age_gender.faces.crops import CropSpec, face_crops
from age_gender.faces.detection import DetectorSpec
from age_gender.models import model
from age_gender.schema import EYE_COLUMNS
from age_gender.training import fit

ASTRONAUT = REPO / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The astronaut upright and turned 20 degrees, a cat (no face), and a missing file."""
    root = tmp_path_factory.mktemp("faces")
    (root / "img").mkdir()
    photo = cv2.imread(str(ASTRONAUT))
    cv2.imwrite(str(root / "img" / "up.jpg"), photo)
    turn = cv2.getRotationMatrix2D((256, 256), -20, 1.0)
    cv2.imwrite(str(root / "img" / "turned.jpg"), cv2.warpAffine(photo, turn, (512, 512)))
    cv2.imwrite(
        str(root / "img" / "cat.jpg"), cv2.imread(str(REPO / "examples" / "cat_no_face.png"))
    )
    names = ["up.jpg", "turned.jpg", "cat.jpg", "missing.jpg"]
    frame = pd.DataFrame({"genders": [0, 0, 1, 1], "ages": [40, 40, 3, 5], "img_paths": names})
    frame.to_csv(root / "labels.csv", index=False)
    return root


def test_landmarks_finds_eyes_and_resumes(faces, tmp_path, run_script):
    output = tmp_path / "eyes.csv"
    arguments = ["landmarks.py", "--csv", faces / "labels.csv", "--root", faces / "img",
                 "--output", output, "--chunk_size", "1", "--workers", "2"]  # fmt: skip
    # A killed run left part 0 (kept as it is) and a part of other images (done again).
    frame = labels.read_labels_csv(faces / "labels.csv")
    settings = label_eyes.run_settings(faces / "img", frame, chunk_size=1, detector=DetectorSpec())
    leftover = jobs.Parts(output, settings, overwrite=False)
    for index, (name, value) in enumerate([("up.jpg", 1.0), ("other.jpg", 9.0)]):
        eyes = {column: [value] for column in EYE_COLUMNS}
        leftover.write(index, pd.DataFrame({"img_paths": [name], **eyes}))
    parts = leftover.folder
    leftover.release()  # the killed run's lock went with it
    result = run_script(*arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eyes found for 2 of 4 faces" in result.stdout
    eyes = pd.read_csv(output)
    assert eyes[EYE_COLUMNS].iloc[0].tolist() == [1.0] * 4  # resumed, not redone
    left_x, left_y, right_x, right_y = eyes[EYE_COLUMNS].iloc[1]
    assert 15 < np.degrees(np.arctan2(right_y - left_y, right_x - left_x)) < 25  # turned 20
    assert eyes[EYE_COLUMNS].iloc[2:].isna().all().all()  # no face, no file
    assert not parts.exists()
    again = run_script(*arguments, cwd=tmp_path)
    assert "exists; pass --overwrite" in user_error(again)


def test_alignment_levels_a_turned_face(faces):
    finder, detector = eye_finder.EyeFinder(), DetectorSpec("hog").build()
    crops, plain = [], []
    for name in ("up.jpg", "turned.jpg"):
        image = cv2.cvtColor(cv2.imread(str(faces / "img" / name)), cv2.COLOR_BGR2RGB)
        box = detector.detect(image)[0].box
        aligned = CropSpec(64, 0.2, aligned=True)
        crops.append(face_crops(image, [box], aligned, [finder.eyes(image, box)])[0])
        plain.append(face_crops(image, [box], CropSpec(64, 0.2))[0])
    aligned_difference = np.abs(crops[0].astype(float) - crops[1]).mean()
    plain_difference = np.abs(plain[0].astype(float) - plain[1]).mean()
    assert aligned_difference < plain_difference / 2


@pytest.mark.slow
def test_an_aligned_model_aligns_at_inference(faces, tmp_path, run_script):
    """train.py with data.align=true saves a model that says so; the demo then aligns."""
    eyes = tmp_path / "eyes.csv"
    found = run_script("landmarks.py", "--csv", faces / "labels.csv", "--root", faces / "img",
                       "--output", eyes, "--workers", "1")  # fmt: skip
    assert found.returncode == 0, found.stderr[-3000:]
    rows = pd.read_csv(eyes)[:2]
    pd.concat([rows] * 8).to_csv(tmp_path / "train.csv", index=False)
    run = tmp_path / "run"
    small = ["data.align=true", *SMALL_MODEL]
    fit.train(compose_config([  # train.py's steps, in this process
        f"data.csv={tmp_path}/train.csv", f"data.val_csv={tmp_path}/train.csv",
        f"data.root={faces}/img", *small, "train.epochs=1", "train.batch_size=8",
        f"train.output_dir={run}",
    ]))  # fmt: skip
    network = model.keras.saving.load_model(run / "best.keras", compile=False)
    assert model.model_card(network).aligned is True

    demo = run_script("demo.py", "--image_dir", faces / "img", "--weight_file", run / "best.keras",
                      "--output_dir", tmp_path / "out", cwd=tmp_path)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("file")
    image = cv2.cvtColor(cv2.imread(str(faces / "img" / "turned.jpg")), cv2.COLOR_BGR2RGB)
    box = tuple(int(table.loc["turned.jpg", c]) for c in ("x_min", "y_min", "x_max", "y_max"))
    (face,) = DetectorSpec().build().detect(image)  # the demo's detector: its eyes align the face
    assert face.box == box
    crop = face_crops(image, [face.box], CropSpec(32, aligned=True), [face.eyes])
    gender, age = network(crop.astype("float32"))
    assert table.loc["turned.jpg", "age"] == pytest.approx(
        decode(np.asarray(gender), np.asarray(age))[0].age, abs=0.01
    )

    with pytest.raises(UserError, match="run landmarks.py on it first"):
        fit.train(compose_config([
            f"data.csv={faces}/labels.csv", f"data.val_csv={faces}/labels.csv",
            f"data.root={faces}/img", *small, f"train.output_dir={tmp_path}/refused",
        ]))  # fmt: skip
    assert not (tmp_path / "refused").exists()
