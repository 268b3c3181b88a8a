"""Small data sets in the real formats, for tests, benchmarks and trying the tools offline.

The real data sets cannot be bundled; these writers produce files with the same layout (the
IMDB-WIKI MATLAB struct, APPA-REAL's folder tree and CSVs) and images whose labels are visible (a
disk whose radius grows with age and whose colour says the gender), so a model can learn them.
"""

import datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import scipy.io

from age_gender.data.labels import MATLAB_TO_PYTHON_ORDINAL


def matlab_datenum(date: datetime.date) -> float:
    return float(date.toordinal() + MATLAB_TO_PYTHON_ORDINAL)


def write_imdb_wiki_mat(path: Path, db: str, columns: dict[str, np.ndarray]) -> None:
    """Writes `columns` as the 1x1 struct `db` of 1xN fields, cells for strings and boxes.

    `columns` needs `dob`, `photo_taken`, `full_path`, `gender`, `face_score`,
    `second_face_score`; `name` and `face_location` are filled in when absent.
    """
    count = len(columns["dob"])
    fields = dict(columns)
    fields.setdefault("name", [f"person {index}" for index in range(count)])
    fields.setdefault("face_location", [np.array([[1.0, 1.0, 50.0, 50.0]])] * count)
    struct = {}
    for name, values in fields.items():
        if name in ("full_path", "name", "face_location"):
            cell = np.empty((1, count), dtype=object)
            cell[0, :] = list(values)
            struct[name] = cell
        else:
            struct[name] = np.asarray(values, dtype=float).reshape(1, count)
    scipy.io.savemat(path, {db: struct})


def random_imdb_wiki_columns(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Columns like IMDB's: about 10 % no face, 20 % second faces, some broken dobs and genders."""
    rng = np.random.default_rng(seed)
    first, last = datetime.date(1920, 1, 1).toordinal(), datetime.date(2005, 1, 1).toordinal()
    birth = rng.integers(first, last, count)
    dob = birth.astype(float) + MATLAB_TO_PYTHON_ORDINAL
    broken = rng.random(count) < 0.01
    dob[broken] = rng.uniform(1, 400, broken.sum())
    photo_taken = (birth // 365.2425 + 1).astype(int) + rng.integers(5, 60, count)
    face_score = rng.normal(3.0, 1.5, count)
    face_score[rng.random(count) < 0.1] = -np.inf
    second = np.full(count, np.nan)
    has_second = rng.random(count) < 0.2
    second[has_second] = rng.normal(1.0, 1.5, has_second.sum())
    gender = rng.integers(0, 2, count).astype(float)
    gender[rng.random(count) < 0.02] = np.nan
    folders = rng.integers(0, 100, count)
    paths = [f"{folder:02d}/nm{index:07d}_{index}_2000.jpg" for index, folder in enumerate(folders)]
    return {
        "dob": dob,
        "photo_taken": photo_taken.astype(float),
        "full_path": paths,
        "gender": gender,
        "face_score": face_score,
        "second_face_score": second,
    }


def disk_image(age: int, gender: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB image of a disk: radius grows with age, red for female, blue for male, noisy."""
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    radius = int(round(size * (0.08 + 0.4 * age / 100)))
    centre = (size // 2 + int(rng.integers(-2, 3)), size // 2 + int(rng.integers(-2, 3)))
    colour = (60, 90, 230) if gender else (230, 90, 60)
    cv2.circle(image, centre, radius, colour, thickness=-1)
    return image


def write_disk_dataset(root: Path, count: int, size: int = 64, seed: int = 0) -> pd.DataFrame:
    """Writes `count` disk JPEGs under `root` and returns their labels in the schema."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ages = rng.integers(0, 101, count)
    genders = rng.integers(0, 2, count)
    paths = []
    for index, (age, gender) in enumerate(zip(ages, genders, strict=True)):
        name = f"{index % 100:02d}/{index:06d}.jpg"
        (root / name).parent.mkdir(exist_ok=True)
        image = disk_image(int(age), int(gender), size, rng)
        cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(name)
    return pd.DataFrame({"genders": genders, "ages": ages, "img_paths": paths})


def write_appa_real(
    root: Path, split: str, count: int, size: int = 64, seed: int = 0
) -> pd.DataFrame:
    """Writes an APPA-REAL split: `{split}/NNNNNN.jpg(_face.jpg)`, gt_avg and allcategories CSVs."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        real_age = int(rng.integers(1, 90))
        apparent = float(np.clip(real_age + rng.normal(0, 4), 0, 100))
        gender = int(rng.integers(0, 2))
        file_name = f"{index:06d}.jpg"
        image = cv2.cvtColor(disk_image(real_age, gender, size, rng), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(root / split / file_name), image)
        cv2.imwrite(str(root / split / f"{file_name}_face.jpg"), image)
        rows.append((file_name, apparent, float(rng.uniform(2, 6)), real_age, gender))
    table = pd.DataFrame(
        rows, columns=["file_name", "apparent_age_avg", "apparent_age_std", "real_age", "male"]
    )
    table.insert(1, "num_ratings", 38)
    table.drop(columns="male").to_csv(root / f"gt_avg_{split}.csv", index=False)
    pd.DataFrame(
        {
            "file": table["file_name"],
            "gender": np.where(table["male"] == 1, "male", "female"),
            "race": "caucasian",
            "makeup": "no_makeup",
            "time": "modernphoto",
            "happiness": "neutral",
        }
    ).to_csv(root / f"allcategories_{split}.csv", index=False)
    return table


def write_face_photos(
    folder: Path, portrait: np.ndarray, count: int, seed: int = 0, sizes: tuple = (400, 800)
) -> list[Path]:
    """Writes `count` JPEGs of `sizes[0]`..`sizes[1]` px with one to three copies of the head in
    `portrait` (an RGB photo of one face), flipped and scaled at random, side by side on a noisy
    background: a photo collection for annotation tests and benchmarks."""
    from age_gender.faces.crops import crop_box
    from age_gender.faces.detection import DetectorSpec

    x_min, y_min, x_max, y_max = crop_box(
        portrait.shape, DetectorSpec().build().detect(portrait)[0].box, 0.6
    ).astype(int)
    portrait = portrait[y_min:y_max, x_min:x_max]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        height, width = (int(side) for side in rng.integers(sizes[0], sizes[1] + 1, 2))
        canvas = rng.integers(30, 90, (height, width, 3), dtype=np.uint8)
        heads = int(rng.integers(1, 4))
        column = width // heads
        for slot in range(heads):
            head = portrait[:, ::-1] if rng.random() < 0.5 else portrait
            scale = min(rng.uniform(0.6, 1.2), column / head.shape[1], height / head.shape[0])
            head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            top = int(rng.integers(0, height - head.shape[0] + 1))
            left = slot * column + int(rng.integers(0, column - head.shape[1] + 1))
            canvas[top : top + head.shape[0], left : left + head.shape[1]] = head
        path = folder / f"{index:05d}.jpg"
        bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths
