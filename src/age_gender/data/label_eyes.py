"""Eye positions for every face of a label CSV, found once for training with data.align=true.

The eyes are the detector's where it gives them (MTCNN) for the face it finds on the row's box,
else dlib's 5-point predictor's. Work is split into chunks that worker processes do in parallel
(each loads its detector once), on the job engine of `jobs`: each finished chunk is written as
a part guarded by the run's settings, so a killed run started again with the same settings does only
the chunks still missing, and the parts are merged into the output at the end.
"""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from age_gender import jobs
from age_gender.data import labels
from age_gender.faces import crops
from age_gender.faces.detection import DetectorSpec
from age_gender.faces.eye_finder import eye_finder
from age_gender.files import atomic_output
from age_gender.images import read_image
from age_gender.schema import BOX_COLUMNS, EYE_COLUMNS

_worker: dict = {}
MATCH_IOU = 0.3  # a detection is the row's face when it overlaps its box this much


def start_worker(root: Path, detector: DetectorSpec) -> None:
    """Each worker's own detector (detectors are not shared between processes)."""
    _worker.update(root=root, detector=detector.build())


def face_eyes(row_box: np.ndarray, image: np.ndarray) -> tuple | None:
    """The eyes of the row's face box (`labels.face_boxes`), else of the most confident
    detection; None without a face. A detector that gives eyes is asked first (for the face on
    the row's box)."""
    detector = _worker["detector"]
    box = None
    if crops.is_box(row_box):
        box = tuple(float(value) for value in row_box)
        if not crops.overlaps(image.shape, box):
            return None
    if box is None or detector.gives_eyes:
        faces = detector.detect(image)
        if box is not None:
            faces = [face for face in faces if crops.iou(box, [face.box])[0] >= MATCH_IOU]
        if faces and faces[0].eyes is not None:
            return faces[0].eyes
        box = box or (faces[0].box if faces else None)
    return None if box is None else tuple(eye_finder().eyes(image, box))


def find_eyes(chunk: tuple[int, pd.DataFrame]) -> tuple[int, pd.DataFrame]:
    """The chunk's img_paths and eye columns (NaN where the image or its face is missing)."""
    index, rows = chunk
    eyes = np.full((len(rows), len(EYE_COLUMNS)), np.nan)
    boxes = labels.face_boxes(rows)
    for position, (name, box) in enumerate(zip(rows["img_paths"], boxes, strict=True)):
        image = read_image(_worker["root"] / name)
        found = None if image is None else face_eyes(box, image)
        if found is not None:
            eyes[position] = found
    found = pd.DataFrame(eyes.round(2), columns=EYE_COLUMNS)
    return index, pd.concat([rows[["img_paths"]].reset_index(drop=True), found], axis=1)


def run_settings(root: Path, frame: pd.DataFrame, chunk_size: int, detector: DetectorSpec) -> dict:
    """What a run's parts depend on: parts of other settings, or of a CSV changed since (rows
    reordered, boxes edited), are never mixed in. Each key is named as the user knows it (an
    option, where there is one), so a refused resume names what changed."""
    columns = ["img_paths", *(column for column in BOX_COLUMNS if column in frame)]
    text = frame[columns].to_csv(index=False)
    rows = hashlib.sha256(text.encode(errors="surrogateescape")).hexdigest()  # names are bytes
    return {"--root": str(root.resolve()), "CSV (its rows)": rows, "--chunk_size": chunk_size,
            "--detector": detector.kind, "--upsample": detector.upsample,
            "--min_face": detector.min_face,
            "detector limits": [detector.min_score, detector.max_side]}  # fmt: skip


def add_eyes(
    frame: pd.DataFrame,
    root: Path,
    output: Path,
    workers: int,
    chunk_size: int,
    detector: DetectorSpec,
    overwrite: bool = False,
) -> pd.DataFrame:
    """`frame` with the eye columns, written to `output`; resumes from the parts of a killed run
    made with the same settings."""  # fmt: skip
    parts = jobs.Parts(output, run_settings(root, frame, chunk_size, detector), overwrite)
    chunks = [(start // chunk_size, frame[start : start + chunk_size])
              for start in range(0, len(frame), chunk_size)]  # fmt: skip
    keys = {index: rows["img_paths"].tolist() for index, rows in chunks}
    todo = [(i, rows) for i, rows in chunks if not parts.done(i, keys[i], "img_paths")]
    done = len(frame) - sum(len(rows) for _, rows in todo)
    if done:
        print(f"resuming: {done} of {len(frame)} faces were done by an earlier run")
    with (
        jobs.failing_in_one_line("finding eyes"),
        jobs.WorkerPool(workers, start_worker, (root, detector)) as pool,
        tqdm(total=len(frame), initial=done, desc="finding eyes", unit="face") as bar,
    ):
        for index, eyes in pool.map(find_eyes, todo):
            parts.write(index, eyes)
            bar.update(len(eyes))
    merged = parts.merge(len(chunks))
    result = frame.drop(columns=EYE_COLUMNS, errors="ignore").reset_index(drop=True)
    result[EYE_COLUMNS] = merged[EYE_COLUMNS]
    with atomic_output(output) as temporary:
        result.to_csv(temporary, index=False, errors="surrogateescape")  # names are bytes
    parts.remove()
    return result
