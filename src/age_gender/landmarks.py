"""Eye positions for every face of a label CSV, found once for training with data.align=true.

Work is split into chunks that worker processes do in parallel (each loads dlib's detector and
shape predictor once), on the job engine of `jobs`: each finished chunk is written as a part
guarded by the run's settings, so a killed run started again with the same settings does only
the chunks still missing, and the parts are merged into the output at the end.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from age_gender import jobs, warping
from age_gender.alignment import EYE_COLUMNS, EyeFinder
from age_gender.faces import FaceDetector
from age_gender.files import atomic_output
from age_gender.images import read_image
from age_gender.labels import BOX_COLUMNS

_worker: dict = {}


def start_worker(root: Path, upsample: int) -> None:
    """Each worker's own detector and predictor (dlib objects are not shared between
    processes)."""
    _worker.update(root=root, detector=FaceDetector("hog", upsample), finder=EyeFinder())


def face_box(row: pd.Series, image: np.ndarray) -> tuple | None:
    """The row's face box, else the most confident detection, else None."""
    if all(column in row for column in BOX_COLUMNS) and row[BOX_COLUMNS].notna().all():
        box = tuple(row[BOX_COLUMNS])
        return box if warping.overlaps(image.shape, box) else None
    faces = _worker["detector"].detect(image)
    return faces[0].box if faces else None


def find_eyes(chunk: tuple[int, pd.DataFrame]) -> tuple[int, pd.DataFrame]:
    """The chunk's img_paths and eye columns (NaN where the image or its face is missing)."""
    index, rows = chunk
    eyes = np.full((len(rows), len(EYE_COLUMNS)), np.nan)
    for position, (_, row) in enumerate(rows.iterrows()):
        image = read_image(_worker["root"] / row["img_paths"])
        box = None if image is None else face_box(row, image)
        if box is not None:
            eyes[position] = _worker["finder"].eyes(image, box)
    found = pd.DataFrame(eyes.round(2), columns=EYE_COLUMNS)
    return index, pd.concat([rows[["img_paths"]].reset_index(drop=True), found], axis=1)


def run_settings(root: Path, frame: pd.DataFrame, chunk_size: int, upsample: int) -> dict:
    """What a run's parts depend on: parts of other settings are never mixed in."""
    return {"root": str(root.resolve()), "rows": len(frame), "chunk_size": chunk_size,
            "upsample": upsample}  # fmt: skip


def add_eyes(
    frame: pd.DataFrame, root: Path, output: Path, workers: int, chunk_size: int, upsample: int,
    overwrite: bool = False,
) -> pd.DataFrame:
    """`frame` with the eye columns, written to `output`; resumes from the parts of a killed run
    made with the same settings."""  # fmt: skip
    parts = jobs.Parts(output, run_settings(root, frame, chunk_size, upsample), overwrite)
    chunks = [(start // chunk_size, frame[start : start + chunk_size])
              for start in range(0, len(frame), chunk_size)]  # fmt: skip
    keys = {index: rows["img_paths"].astype(str).tolist() for index, rows in chunks}
    todo = [(i, rows) for i, rows in chunks if not parts.done(i, keys[i], "img_paths")]
    done = len(frame) - sum(len(rows) for _, rows in todo)
    if done:
        print(f"resuming: {done} of {len(frame)} faces were done by an earlier run")
    with (
        jobs.failing_in_one_line("finding eyes"),
        jobs.WorkerPool(workers, start_worker, (root, upsample)) as pool,
        tqdm(total=len(frame), initial=done, desc="finding eyes", unit="face") as bar,
    ):
        for index, eyes in pool.map(find_eyes, todo):
            parts.write(index, eyes)
            bar.update(len(eyes))
    merged = parts.merge(len(chunks))
    result = frame.drop(columns=EYE_COLUMNS, errors="ignore").reset_index(drop=True)
    result[EYE_COLUMNS] = merged[EYE_COLUMNS]
    with atomic_output(output) as temporary:
        result.to_csv(temporary, index=False)
    parts.remove()
    return result
