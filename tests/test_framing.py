"""The framing of pre-cropped faces (where a detector's box sits in a UTKFace-like crop), what
training records of it, and the scenes that measure a model as users run it."""

import cv2
import numpy as np
import pandas as pd
from conftest import ASTRONAUT_FACE, REPO, astronaut
from support import scenes

from age_gender import schema
from age_gender.data import labels
from age_gender.data.composites import PasteSettings
from age_gender.faces import crops, detection, framing
from age_gender.faces.crops import CropSpec


def tight_crops(count: int, jitter: float = 1.0) -> list[np.ndarray]:
    """UTKFace-like crops of the astronaut: the face at 0.78 of a square crop, jittered as a
    data set's alignment is (`jitter` 0: none)."""
    image, rng = astronaut(), np.random.default_rng(0)
    x_min, y_min, x_max, y_max = ASTRONAUT_FACE
    cut = []
    for _ in range(count):
        side = (x_max - x_min) * 1.28 * (1 + jitter * rng.uniform(-0.05, 0.05))
        centre_x = (x_min + x_max) / 2 + jitter * rng.uniform(-3, 3)
        centre_y = (y_min + y_max) / 2 + 8 + jitter * rng.uniform(-3, 3)
        box = (centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2)
        cut.append(crops.warp(image, box, 200))
    return cut


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
    found = detection.DetectorSpec("hog").build().detect(photo)  # the detector it was measured with
    assert len(found) == 1
    recovered = crops.crop_box(photo.shape, found[0].box, measured.margin, measured.offset)
    # Within 4 % of the crop: at most 4 px of a 96 px model input (the detector snaps its box).
    assert np.abs(recovered - [300, 150, 500, 350]).max() <= 8
    default = crops.crop_box(photo.shape, found[0].box, 0.4)
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
    paste = PasteSettings(face_sizes=(90, 140), max_angle=0, margin=0.14, offset=(0.0, 0.04))
    settings = scenes.SceneSettings(faces_per_frame=(1, 2), paste=paste)
    backgrounds = [REPO / "examples" / "cat_no_face.png"]
    made = scenes.build_scenes(rows, folder, backgrounds, 4, 0, settings)
    truth = scenes.write_scenes(made, tmp_path / "frames")
    assert len(truth) >= 4 and set(truth["ages"]) <= set(range(30, 36))
    detector, found = detection.DetectorSpec().build(), []
    for name in sorted(set(truth["file"])):
        image = cv2.imread(str(tmp_path / "frames" / name))[..., ::-1].copy()
        found += [{"file": name, **dict(zip(schema.BOX_COLUMNS, face.box, strict=True))}
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
    from age_gender.config import compose_config
    from age_gender.training import fit

    folder = tmp_path / "crops"
    folder.mkdir()
    for index, crop in enumerate(tight_crops(24)):
        cv2.imwrite(str(folder / f"{index}.png"), crop[..., ::-1])
    rows = pd.DataFrame({"genders": 0, "ages": 30, "img_paths": [f"{i}.png" for i in range(24)]})
    cfg = compose_config([f"data.root={folder}"])
    crop = fit.crop_spec(cfg, rows)
    assert 0.0 < crop.margin < 0.2 and crop.offset != (0.0, 0.0) and crop.size == 224
    # Boxes in every row: the configured margin is the framing.
    boxed = rows.assign(x_min=10, y_min=10, x_max=90, y_max=90)
    assert fit.crop_spec(cfg, boxed) == CropSpec(224, 0.4)
