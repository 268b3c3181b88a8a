"""The levers of the real-faces recipe: the split, age losses, age balance, flip averaging, the
framing of pre-cropped faces and the scenes that measure a model as users run it."""

import dataclasses

import cv2
import keras
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, user_error

from age_gender import dataset, faces, framing, labels, model, scenes, warping
from age_gender.estimators.base import decode
from age_gender.estimators.presets import load_estimator

ASTRONAUT_FACE = (175, 76, 266, 167)


def astronaut() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(REPO / "examples" / "astronaut.png")), cv2.COLOR_BGR2RGB)


def test_the_hash_split_is_stable_and_each_file_keeps_its_side():
    names = [f"{age}_{age % 2}_0_2017{age:04d}.jpg.chip.jpg" for age in range(90)] * 20
    names = [f"{index}_{name}" for index, name in enumerate(names)]
    rows = pd.DataFrame({"genders": 0, "ages": 30, "img_paths": names})
    split = labels.hash_split(labels.LabelTable(rows, {}), 0.1)
    validation = set(split["val"].rows["img_paths"])
    assert 0.07 < len(validation) / len(rows) < 0.13
    assert validation.isdisjoint(split["train"].rows["img_paths"])
    # Half of the files, in another order and folder: each keeps the side it had.
    fewer = rows.sample(frac=0.5, random_state=1).assign(img_paths=lambda f: "sub/" + f.img_paths)
    again = labels.hash_split(labels.LabelTable(fewer, {}), 0.1)
    assert {name[4:] for name in again["val"].rows["img_paths"]} == validation & set(
        fewer["img_paths"].str[4:]
    )


def test_create_db_writes_the_split_and_refuses_a_bad_fraction(tmp_path, run_script):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    for index in range(40):
        cv2.imwrite(str(folder / f"{index + 1}_{index % 2}_0_2017{index:04d}.jpg.chip.jpg"),
                    np.zeros((8, 8, 3), np.uint8))  # fmt: skip
    output = tmp_path / "utk.csv"
    result = run_script("create_db.py", "--db", "utkface", "--data_dir", folder,
                        "--val_fraction", "0.25", "--output", output)  # fmt: skip
    assert result.returncode == 0, result.stderr
    train, val = (pd.read_csv(tmp_path / f"utk_{split}.csv") for split in ("train", "val"))
    assert len(train) + len(val) == 40 and 3 <= len(val) <= 18
    refused = run_script("create_db.py", "--db", "utkface", "--data_dir", folder,
                         "--val_fraction", "1.5", "--output", tmp_path / "x.csv")  # fmt: skip
    assert "--val_fraction must be in [0, 1)" in user_error(refused)


def test_the_dldl_target_sums_to_one_and_peaks_at_the_true_age():
    one_hot = keras.utils.to_categorical([0, 37, 100], 101)
    target = np.asarray(model.label_distribution(one_hot, 2.0))
    assert np.allclose(target.sum(axis=1), 1.0)
    assert target.argmax(axis=1).tolist() == [0, 37, 100]
    assert target[1, 36] == pytest.approx(target[1, 38]) and target[1, 35] < target[1, 36]


@pytest.mark.parametrize("name", ["ce", "dldl", "mean_variance"])
def test_each_age_loss_prefers_the_true_age(name):
    loss = model.age_loss(name)
    truth = keras.utils.to_categorical([40], 101)
    near = keras.utils.to_categorical([41], 101) * 0.6 + truth * 0.3 + 0.1 / 101
    far = keras.utils.to_categorical([60], 101) * 0.6 + truth * 0.3 + 0.1 / 101
    assert float(loss(truth, near)) < float(loss(truth, far))
    if name != "ce":  # the expected-age terms see how far a wrong age is
        farther = keras.utils.to_categorical([90], 101) * 0.6 + truth * 0.3 + 0.1 / 101
        assert float(loss(truth, far)) < float(loss(truth, farther))


def test_mean_variance_punishes_a_spread_out_guess():
    loss = model.age_loss("mean_variance")
    truth = keras.utils.to_categorical([50], 101)
    sharp = 0.5 * truth + 0.25 * keras.utils.to_categorical([49], 101)
    sharp += 0.25 * keras.utils.to_categorical([51], 101)
    wide = 0.5 * truth + 0.25 * keras.utils.to_categorical([30], 101)
    wide += 0.25 * keras.utils.to_categorical([70], 101)
    assert float(loss(truth, sharp)) < float(loss(truth, wide))


def test_balanced_weights_raise_rare_ages_and_keep_the_mean():
    ages = np.array([25] * 500 + [30] * 400 + [80] * 5)
    weights = dataset.balanced_age_weights(ages)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[-1] > 5 * weights[0]
    assert weights[0] < weights[500]  # 25 is commoner than 30


def test_balanced_weights_reach_the_loss(tmp_path):
    frame = pd.DataFrame({
        "genders": [0, 1, 0, 1], "ages": [20, 20, 20, 70], "img_paths": ["a.png"] * 4
    })  # fmt: skip
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    weights = dataset.balanced_age_weights(frame["ages"].to_numpy())
    data = dataset.make_dataset(frame, tmp_path, 8, 4, age_weights=weights)
    _, _, (gender_weights, age_weights) = next(iter(data))
    assert np.allclose(age_weights, weights) and np.allclose(gender_weights, 1.0)


def test_flip_averaging_is_the_mean_of_a_face_and_its_mirror(varied_model):
    runner = load_estimator(varied_model / "tiny.keras")
    crops = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    plain = runner.predict_crops(crops)
    runner.set_options(tta="flip")
    flipped = runner.predict_crops(crops)
    gender, age = (
        (first + second) / 2
        for first, second in zip(
            runner.probabilities(crops), runner.probabilities(crops[:, :, ::-1]), strict=True
        )
    )
    for got, want, alone in zip(flipped, decode(gender, age), plain, strict=True):
        assert got.age == pytest.approx(want.age, abs=1e-4)
        assert got.age != pytest.approx(alone.age, abs=1e-4)


def tight_crops(count: int, jitter: float = 1.0) -> list[np.ndarray]:
    """UTKFace-like crops of the astronaut: the face at 0.78 of a square crop, jittered as a
    data set's alignment is (`jitter` 0: none)."""
    image, rng = astronaut(), np.random.default_rng(0)
    x_min, y_min, x_max, y_max = ASTRONAUT_FACE
    crops = []
    for _ in range(count):
        side = (x_max - x_min) * 1.28 * (1 + jitter * rng.uniform(-0.05, 0.05))
        centre_x = (x_min + x_max) / 2 + jitter * rng.uniform(-3, 3)
        centre_y = (y_min + y_max) / 2 + 8 + jitter * rng.uniform(-3, 3)
        box = (centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2)
        crops.append(warping.warp(image, box, 200))
    return crops


def test_the_measured_framing_crops_a_detected_face_as_training_did(tmp_path):
    paths = []
    for index, crop in enumerate(tight_crops(24)):
        paths.append(tmp_path / f"{index}.png")
        cv2.imwrite(str(paths[-1]), crop[..., ::-1])
    measured = framing.measure_framing(paths)
    assert measured is not None and measured.found >= 20
    assert 0.0 < measured.margin < 0.2  # a tight crop: nothing like the default 0.4
    # A training crop placed in a photo: the detected box, framed as measured, finds it again.
    crop = tight_crops(1, jitter=0)[0]
    photo = np.full((480, 640, 3), 90, np.uint8)
    photo[150:350, 300:500] = crop
    found = faces.FaceDetector("hog").detect(photo)  # the detector it was measured with
    assert len(found) == 1
    recovered = warping.crop_box(photo.shape, found[0].box, measured.margin, measured.offset)
    # Within 4 % of the crop: at most 4 px of a 96 px model input (the detector snaps its box).
    assert np.abs(recovered - [300, 150, 500, 350]).max() <= 8
    default = warping.crop_box(photo.shape, found[0].box, 0.4)
    assert np.abs(default - [300, 150, 500, 350]).max() > 30  # what the old 0.4 would show


def test_too_few_faces_leave_the_framing_unmeasured(tmp_path):
    path = tmp_path / "cat.png"
    cv2.imwrite(str(path), cv2.imread(str(REPO / "examples" / "cat_no_face.png")))
    assert framing.measure_framing([path] * 5) is None


def test_scenes_hold_their_faces_where_the_detector_boxes_them(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for index, crop in enumerate(tight_crops(6)):
        cv2.imwrite(str(folder / f"{30 + index}_1_0_2017{index}.jpg"), crop[..., ::-1])
    rows = labels.read_utkface(folder).rows
    settings = scenes.SceneSettings(face_sizes=(90, 140), max_angle=0, faces_per_frame=(1, 2),
                                    margin=0.14, offset=(0.0, 0.04))  # fmt: skip
    backgrounds = [REPO / "examples" / "cat_no_face.png"]
    made = scenes.build_scenes(rows, folder, backgrounds, 4, 0, settings)
    truth = scenes.write_scenes(made, tmp_path / "frames")
    assert len(truth) >= 4 and set(truth["ages"]) <= set(range(30, 36))
    detector, found = faces.FaceDetector(), []
    for name in sorted(set(truth["file"])):
        image = cv2.imread(str(tmp_path / "frames" / name))[..., ::-1].copy()
        found += [{"file": name, **dict(zip(labels.BOX_COLUMNS, face.box, strict=True))}
                  for face in detector.detect(image)]  # fmt: skip
    matched = scenes.match_faces(truth, pd.DataFrame(found))
    assert matched["iou"].notna().mean() >= 0.75
    assert matched["iou"].dropna().min() > 0.5
    assert matched.attrs["false_positives"] <= 1
    # The same scenes again from the same seed.
    again = scenes.write_scenes(
        scenes.build_scenes(rows, folder, backgrounds, 4, 0, settings),
        tmp_path / "again",
    )
    pd.testing.assert_frame_equal(truth, again)


def test_training_records_the_framing_of_box_less_crops(tmp_path):
    from age_gender import training
    from age_gender.config import compose_config

    folder = tmp_path / "crops"
    folder.mkdir()
    for index, crop in enumerate(tight_crops(24)):
        cv2.imwrite(str(folder / f"{index}.png"), crop[..., ::-1])
    rows = pd.DataFrame({"genders": 0, "ages": 30, "img_paths": [f"{i}.png" for i in range(24)]})
    cfg = compose_config([f"data.root={folder}"])
    margin, offset = training.crop_framing(cfg, rows)
    assert 0.0 < margin < 0.2 and offset != (0.0, 0.0)
    # Boxes in every row: the configured margin is the framing.
    boxed = rows.assign(x_min=10, y_min=10, x_max=90, y_max=90)
    assert training.crop_framing(cfg, boxed) == (0.4, (0.0, 0.0))


def test_every_estimator_path_crops_with_the_models_offset(varied_model):
    runner = load_estimator(varied_model / "tiny.keras")
    runner.crop_spec = dataclasses.replace(runner.crop_spec, offset=(0.25, -0.2))
    spec = runner.crop_spec
    image, box = astronaut(), ASTRONAUT_FACE
    crop = faces.crop_faces(image, [box], spec.margin, spec.size, spec.offset)
    moved = runner.predict_faces([(image, box, None)])[0]
    assert moved.age == pytest.approx(runner.predict_crops(crop)[0].age, abs=1e-4)
    unmoved = faces.crop_faces(image, [box], spec.margin, spec.size)
    assert moved.age != pytest.approx(runner.predict_crops(unmoved)[0].age, abs=1e-3)
    from age_gender.annotation import FaceFinding

    finding = FaceFinding.for_model(runner, faces.FaceDetector())
    assert finding.crop.offset == (0.25, -0.2)  # what the annotate workers crop with
