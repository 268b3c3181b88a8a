"""Photo-like scenes made of labelled face crops: the honest measure of what a user gets, since
users run a detector on photos, not a model on a data set's crops.

Each face crop is pasted into a photo background with feathered edges, at a face size of
`face_sizes` pixels, turned, and lit differently; its true box is where a detector's box would
sit (the crop framed as `framing.measure_framing` finds detectors box such crops), so a detected
face matches its truth by IoU. The same seed gives the same scenes.
"""

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender.data.composites import PasteSettings, background, paste_face
from age_gender.faces import crops
from age_gender.images import read_image
from age_gender.schema import BOX_COLUMNS

FRAME_SIZE = (640, 480)  # width, height


@dataclasses.dataclass(frozen=True)
class SceneSettings:
    """How scenes are made: frame size, the faces per frame, and how each is pasted (size,
    turn, light, the crops' framing: training's composites paste them the same way)."""

    frame_size: tuple[int, int] = FRAME_SIZE
    faces_per_frame: tuple[int, int] = (1, 4)
    paste: PasteSettings = PasteSettings()


@dataclasses.dataclass
class Scene:
    """An RGB frame and its faces: one row each with the true box, age, gender and source file."""

    image: np.ndarray
    faces: pd.DataFrame


def place(
    rng: np.random.Generator, side: float, taken: list[tuple], settings: SceneSettings
) -> tuple[float, float] | None:
    """A centre for a face box of `side` px inside the frame whose crop overlaps no other face
    (None after 30 tries)."""
    width, height = settings.frame_size
    reach = side * (0.5 + settings.paste.margin)
    for _ in range(30):
        x = rng.uniform(reach, width - reach) if width > 2 * reach else width / 2
        y = rng.uniform(reach, height - reach) if height > 2 * reach else height / 2
        if all(abs(x - ox) > reach + oreach or abs(y - oy) > reach + oreach
               for ox, oy, oreach in taken):  # fmt: skip
            taken.append((x, y, reach))
            return x, y
    return None


def build_scenes(
    faces: pd.DataFrame,
    root: Path,
    backgrounds: list[Path],
    count: int,
    seed: int = 0,
    settings: SceneSettings = SceneSettings(),
) -> Iterator[Scene]:
    """`count` scenes of faces drawn without replacement from `faces` (img_paths, ages, genders;
    whole-image crops under `root`), each face once until all are used."""
    rng = np.random.default_rng(seed)
    order = iter(rng.permutation(len(faces)))
    low, high = settings.paste.face_sizes
    for _ in range(count):
        frame = background(backgrounds, rng, settings.frame_size)
        rows, taken = [], []
        for _ in range(rng.integers(settings.faces_per_frame[0], settings.faces_per_frame[1] + 1)):
            # Sizes spread evenly on a log scale: small faces are as common as large ones.
            side = math.exp(rng.uniform(math.log(low), math.log(high)))
            centre = place(rng, side, taken, settings)
            index = next(order, None)
            if centre is None or index is None:
                continue
            row = faces.iloc[index]
            crop = read_image(root / row["img_paths"])
            if crop is None:
                continue
            paste = settings.paste
            angle = rng.uniform(-paste.max_angle, paste.max_angle)
            light = (rng.uniform(*paste.gain), rng.uniform(*paste.bias))
            box = paste_face(frame, crop, side, centre, angle, light, paste)
            rows.append({
                **dict(zip(BOX_COLUMNS, box, strict=True)), "ages": int(row["ages"]),
                "genders": int(row["genders"]), "source": row["img_paths"],
                "angle": round(angle, 1),
            })  # fmt: skip
        yield Scene(frame, pd.DataFrame(rows, columns=[*BOX_COLUMNS, "ages", "genders",
                                                       "source", "angle"]))  # fmt: skip


def write_scenes(scenes: Iterator[Scene], folder: Path) -> pd.DataFrame:
    """Writes each scene as `folder/scene_00000.jpg` (JPEG 92) and returns the truth: one row
    per face with its scene's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for number, scene in enumerate(scenes):
        name = f"scene_{number:05d}.jpg"
        cv2.imwrite(str(folder / name), scene.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        tables.append(scene.faces.assign(file=name))
    return pd.concat(tables, ignore_index=True)


def match_faces(truth: pd.DataFrame, found: pd.DataFrame, threshold: float = 0.3) -> pd.DataFrame:
    """Each true face with the detected face of its scene (`file`) that overlaps it most, at
    IoU >= `threshold`, each detection used once (best overlaps first). Returns `truth` with
    the matched detection's columns prefixed `found_` (NaN where none), plus the number of
    detections left unmatched (false positives) in `attrs["false_positives"]`."""
    pairs = []
    for file, faces in truth.groupby("file"):
        detected = found[found["file"] == file]
        for t_index, t_box in zip(faces.index, faces[BOX_COLUMNS].to_numpy(float), strict=True):
            boxes = detected[BOX_COLUMNS].to_numpy(float)
            for d_index, d_box in zip(detected.index, boxes, strict=True):
                overlap = float(crops.iou(t_box, [d_box])[0])
                if overlap >= threshold:
                    pairs.append((overlap, t_index, d_index))
    matched = truth.copy()
    used_truth, used_found = set(), set()
    for overlap, t_index, d_index in sorted(pairs, reverse=True):
        if t_index in used_truth or d_index in used_found:
            continue
        used_truth.add(t_index)
        used_found.add(d_index)
        for column in found.columns:
            if column != "file":
                matched.loc[t_index, f"found_{column}"] = found.loc[d_index, column]
        matched.loc[t_index, "iou"] = overlap
    matched.attrs["false_positives"] = len(found) - len(used_found)
    return matched
