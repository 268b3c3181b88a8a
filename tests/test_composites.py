"""composite_faces.py: face crops pasted into backgrounds and found there by the detector, with
the eyes that turn them upright; resumed, and refused in one line where it cannot work."""

import math

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, user_error
from test_framing import tight_crops

from age_gender.data import composites
from age_gender.data.composites import PasteSettings
from age_gender.errors import UserError
from age_gender.faces import crops
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DetectorSpec
from age_gender.images import read_image
from age_gender.schema import BOX_COLUMNS, EYE_COLUMNS

BACKGROUNDS = REPO / "examples" / "backgrounds"


@pytest.fixture
def face_crops(tmp_path):
    """Eight UTKFace-like crops of the astronaut, labelled as create_db.py writes them."""
    folder = tmp_path / "crops"
    folder.mkdir()
    names = []
    for index, crop in enumerate(tight_crops(8)):
        names.append(f"{40 + index}_1_0_2017{index}.jpg")
        cv2.imwrite(str(folder / names[-1]), crop[..., ::-1])
    rows = pd.DataFrame({"genders": 1, "ages": range(40, 48), "img_paths": names, "race": "W"})
    rows.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path


def test_composites_are_found_and_turned_upright_by_their_eyes(face_crops, run_script):
    command = ["composite_faces.py", "--csv", "train.csv", "--root", "crops", "--backgrounds",
               BACKGROUNDS, "--output_dir", "out", "--workers", "1"]  # fmt: skip
    result = run_script(*command, cwd=face_crops)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(face_crops / "out" / "train.csv")
    assert rows["ages"].tolist() == list(range(40, 48)) and set(rows["race"]) == {"W"}
    found = rows.dropna(subset=BOX_COLUMNS)
    assert len(found) >= 6 and found[EYE_COLUMNS].notna().all().all()
    reference = tight_crops(1, jitter=0)[0]
    original = cv2.resize(reference, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    middle = slice(16, 48)  # the face, not the feathered edge or the background
    for index, row in found.iterrows():
        # Each face was pasted turned (its seeded draw says how far): its eyes say the same.
        _, turn, _ = composites.random_look(np.random.default_rng([0, index]), PasteSettings())
        eyes = row[EYE_COLUMNS].to_numpy(float)
        assert math.degrees(crops.eye_angle(eyes)) == pytest.approx(-turn, abs=6)
        # Turned back by them, its crop is the crop it was made of.
        image = read_image(face_crops / "out" / row["img_paths"])
        spec = CropSpec(64, 0.06, upright=True)
        source, angle = crops.region(image.shape, spec, row[BOX_COLUMNS], eyes)
        face = crops.warp(image, source, 64, angle=angle).astype(float)
        similarity = np.corrcoef(face[middle, middle].ravel(), original[middle, middle].ravel())
        assert similarity[0, 1] > 0.5
    both = run_script(*command[:-4], "--output_dir", "both", "--with_crops", cwd=face_crops)
    assert both.returncode == 0, both.stderr[-3000:]
    with_crops = pd.read_csv(face_crops / "both" / "train.csv")
    crop_rows = with_crops[with_crops["img_paths"].str.startswith("crops/")]
    assert len(crop_rows) == len(found) and crop_rows[BOX_COLUMNS].isna().all().all()
    assert len(with_crops) == len(rows) + len(found)
    again = run_script(*command, "--overwrite", cwd=face_crops)  # each composite made once
    assert again.returncode == 0 and "resuming: 8 of 8 composites are made already" in again.stdout
    assert pd.read_csv(face_crops / "out" / "train.csv").equals(rows)


def test_wrong_inputs_are_one_line(face_crops, run_script):
    empty = face_crops / "empty"
    empty.mkdir()
    for extra, message in [
        (["--backgrounds", empty], f"no background photos in {empty}"),
        (["--backgrounds", BACKGROUNDS, "--root", "nowhere"], "image folder nowhere does not"),
    ]:
        result = run_script("composite_faces.py", "--csv", "train.csv", "--root", "crops",
                            "--output_dir", "out", *extra, cwd=face_crops)  # fmt: skip
        assert message in user_error(result)
    boxed = pd.read_csv(face_crops / "train.csv").assign(x_min=1, y_min=1, x_max=50, y_max=50)
    boxed.to_csv(face_crops / "boxed.csv", index=False)
    result = run_script(
        "composite_faces.py", "--csv", "boxed.csv", "--root", "crops", "--backgrounds",
        BACKGROUNDS, "--output_dir", "out2", cwd=face_crops,
    )  # fmt: skip
    assert "these rows have face boxes" in user_error(result)


def test_a_background_that_cannot_be_read_stops_before_any_composite(tmp_path):
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    (folder / "room.png").write_bytes((REPO / "examples" / "cat_no_face.png").read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="empty.jpg cannot be read .*: remove it"):
        composites.backgrounds_in(folder)


def test_a_crop_or_background_replaced_in_place_is_a_new_composite(tmp_path):
    crop, backdrop = tmp_path / "40_1_0_1.jpg", tmp_path / "room.jpg"
    crop.write_bytes(b"a crop")
    backdrop.write_bytes(b"a room")

    def name() -> str:
        places = composites.places_key([backdrop])
        return composites.composite_name(crop, 0, 0, PasteSettings(), DetectorSpec(), places)

    first = name()
    assert name() == first  # the same files: the composite is reused
    crop.write_bytes(b"another crop")
    second = name()
    backdrop.write_bytes(b"another room")
    assert len({first, second, name()}) == 3


def test_a_found_faces_crop_is_copied_once_and_anew_when_replaced(tmp_path):
    crop, output = tmp_path / "faces" / "40_1_0_1.jpg", tmp_path / "out"
    crop.parent.mkdir()
    crop.write_bytes(b"a crop")
    frame = pd.DataFrame({"img_paths": [crop.name, "missed.jpg"], "ages": [40, 9]})
    placed = np.array([[10.0, 10, 50, 50], [np.nan] * 4])  # the second face was not found

    rows = composites.crop_rows(frame, crop.parent, output, [0, 1], placed)
    assert rows["ages"].tolist() == [40]  # only a found face has a crop row
    copy = output / rows["img_paths"].iloc[0]
    assert copy.read_bytes() == b"a crop"
    copied_at = copy.stat().st_mtime_ns
    again = composites.crop_rows(frame, crop.parent, output, [0, 1], placed)
    assert again.equals(rows) and copy.stat().st_mtime_ns == copied_at  # reused, not copied

    crop.write_bytes(b"another crop, replaced under its name")
    renewed = composites.crop_rows(frame, crop.parent, output, [0, 1], placed)
    assert renewed["img_paths"].iloc[0] != rows["img_paths"].iloc[0]
    assert (output / renewed["img_paths"].iloc[0]).read_bytes().startswith(b"another crop")
