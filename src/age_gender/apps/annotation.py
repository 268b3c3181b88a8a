"""Age and gender for every face of a collection of images, as one table (annotate.py).

Worker processes decode, detect and crop (`api.find_faces`, each with its own detector); the
main process runs the model (`predict_inputs`) on the faces gathered across images, at most
`batch_size` a call, so nothing is decoded twice. Images are done in parts of `part_size`, each
written when complete (temporary name, then rename) into a folder beside the output: a run
killed at any moment and started again with the same arguments does only the parts still
missing. The parts are merged into the output at the end, every image exactly once.
"""

import dataclasses
import glob
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from age_gender import jobs
from age_gender.apps.api import find_faces
from age_gender.data import labels
from age_gender.data.records import (
    image_rows,
    prediction_record,
    typed,
    unreadable_row,
    write_table,
)
from age_gender.errors import UserError, printable
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DetectorSpec
from age_gender.images import glob_files, image_files, once_each, read_image
from age_gender.schema import OK, Prediction

PARTS_AHEAD = 2  # parts being decoded while the model runs: bounds the crops held in memory


def list_images(source: str, root: Path | None = None) -> tuple[Path, list[str]]:
    """(the folder names start from, the image names): every image file under a folder
    (`images.image_files`), every file a glob matches, or the `img_paths` of a CSV; each once."""
    path = Path(source)
    if root is not None and path.suffix.lower() != ".csv":
        raise UserError("--root applies to a CSV input (its img_paths start there)")
    if path.is_dir():
        base, names = path, [str(file.relative_to(path)) for file in image_files(path)]
    elif path.suffix.lower() == ".csv":
        base = root or Path()
        names = csv_images(path, base)
        if not base.is_dir():
            what = "is not a folder" if base.exists() else "does not exist"
            raise UserError(f"image folder {base} {what}; set --root to the folder of the CSV's "
                            "img_paths")  # fmt: skip
    elif glob.has_magic(source):
        base, names = Path(), once_each(glob_files(source))
    else:
        raise UserError(f"{source} is not a folder, a CSV file or a glob pattern ('photos/*.jpg')")
    if not names:
        raise UserError(f"no images in {source}")
    return base, names


def csv_images(path: Path, base: Path) -> list[str]:
    """The CSV's `img_paths`, each file once (`a.jpg` and `./a.jpg` are one: the first
    spelling is kept), in order of first appearance."""
    if not path.is_file():
        raise UserError(f"CSV file {path} does not exist")
    if not labels.is_text(path):
        raise UserError(f"{path} is not a CSV file (not text: an image?)")
    try:  # names are bytes: kept as Python strings, as `labels.read_labels_csv` keeps them
        paths = pd.read_csv(path, usecols=["img_paths"], dtype=object,
                            encoding_errors="surrogateescape")["img_paths"]  # fmt: skip
    except ValueError as error:  # pandas' message for a missing column
        raise UserError(f"{path} needs an img_paths column: {error}") from error
    files = {}
    for name in paths.dropna():
        files.setdefault(os.path.realpath(base / name), name)
    return list(files.values())


@dataclasses.dataclass(frozen=True)
class FaceFinding:
    """How workers find and crop faces: the detector's settings and the model's crop spec (None
    for a model that crops faces itself)."""

    detector: DetectorSpec = DetectorSpec()
    crop: CropSpec | None = None


class Examiner:
    """One worker's detector (built in the worker: detectors are not shared between processes)
    and the model's crop: an image name in, its rows and what the model takes of it out."""

    def __init__(self, root: Path, finding: FaceFinding):
        self.root = root
        self.finding = finding
        self.detector = finding.detector.build()

    def __call__(self, name: str) -> tuple[list[dict], object]:
        """One image's rows (one per face, else one saying why there is none) and its faces'
        `face_inputs` (None without faces)."""
        image = read_image(self.root / name)
        if image is None:
            return [unreadable_row(printable(name))], None
        faces, inputs = find_faces(image, self.detector, self.finding.crop)
        return image_rows(printable(name), image.shape, faces), inputs


_examiner: list[Examiner] = []  # the worker process's one examiner


def start_worker(root: Path, finding: FaceFinding) -> None:
    _examiner[:] = [Examiner(root, finding)]


def examine(name: str) -> tuple[list[dict], object]:
    return _examiner[0](name)


class FaceBatches:
    """Faces gathered across images and estimated once `batch_size` of them wait, so the model
    runs while the workers go on; predictions come out in the order faces went in."""

    def __init__(self, estimator, batch_size: int):
        self.estimator = estimator
        self.batch_size = batch_size
        self.waiting: list = []
        self.faces = 0
        self.predictions: list[Prediction] = []

    def add(self, rows: list[dict], inputs: object) -> None:
        """One image's rows and its faces' `face_inputs` (None without faces)."""
        if inputs is None:
            return
        self.waiting.append(inputs)
        self.faces += sum(row["status"] == OK for row in rows)
        if self.faces >= self.batch_size:
            self.run()

    def run(self) -> list[Prediction]:
        """Estimates the faces waiting; all the predictions so far."""
        if self.waiting:
            self.predictions += self.estimator.predict_inputs(self.waiting, self.batch_size)
            self.waiting, self.faces = [], 0
        return self.predictions


def with_predictions(rows: list[dict], predictions: list[Prediction]) -> list[dict]:
    """The rows, those of faces (in order) completed with their predictions."""
    found = iter(predictions)
    return [{**row, **prediction_record(next(found))} if row["status"] == OK else row
            for row in rows]  # fmt: skip


def finish_part(
    index: int, results: Iterable, estimator, batch_size: int, parts: jobs.Parts, bar: tqdm
) -> int:
    """Estimates a part's faces as its images arrive and writes the part; returns the number of
    faces."""
    rows, batches = [], FaceBatches(estimator, batch_size)
    for found, faces in results:
        rows += found
        batches.add(found, faces)
        bar.update()
    predictions = batches.run()
    parts.write(index, typed(with_predictions(rows, predictions)))
    return len(predictions)


def annotate(
    names: list[str],
    root: Path,
    output: Path,
    estimator,
    finding: FaceFinding,
    parts: jobs.Parts,
    workers: int,
    batch_size: int,
    part_size: int,
) -> pd.DataFrame:
    """Annotates the images `names` (under `root`) and writes the table to `output`."""
    chunks = [names[start : start + part_size] for start in range(0, len(names), part_size)]
    shown = [list(map(printable, chunk)) for chunk in chunks]  # as the parts hold them
    todo = [index for index in range(len(chunks)) if not parts.done(index, shown[index], "file")]
    done = len(names) - sum(len(chunks[index]) for index in todo)
    if done:
        print(f"resuming: {done} of {len(names)} images were done by an earlier run")
    with (
        jobs.failing_in_one_line("reading images"),
        jobs.WorkerPool(workers, start_worker, (root, finding)) as pool,
        tqdm(total=len(names), initial=done, desc="annotating", unit="image") as bar,
    ):
        started, faces = time.perf_counter(), 0
        in_flight: deque = deque()

        def finish_oldest() -> None:
            nonlocal faces
            faces += finish_part(*in_flight.popleft(), estimator, batch_size, parts, bar)
            bar.set_postfix(faces_per_s=f"{faces / (time.perf_counter() - started):.1f}")

        for index in todo:
            in_flight.append((index, pool.map(examine, chunks[index])))
            if len(in_flight) > PARTS_AHEAD:
                finish_oldest()
        while in_flight:
            finish_oldest()
    table = parts.merge(len(chunks))
    write_table(table, output)
    parts.remove()
    return table
