"""The demo: faces found, age and gender estimated and drawn, on images, a video or a webcam.

With a display (and an OpenCV built with windows) results are shown; otherwise, or with
--no-display, annotated images or an annotated video and predictions.csv / predictions.json
are written to the output folder.
"""

import json
import os
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from age_gender.apps.api import FaceAnalyzer
from age_gender.apps.drawing import draw_faces
from age_gender.apps.tracking import FaceTracker
from age_gender.data.records import image_rows, read_csv_table, typed, unreadable_row, write_table
from age_gender.errors import UserError, printable
from age_gender.faces.detection import FaceDetector
from age_gender.files import atomic_output, cannot_write, check_inputs_kept, remove_leftovers
from age_gender.images import is_image_file, read_image
from age_gender.schema import COLUMNS, UNREADABLE

WINDOW = "age and gender (q to quit)"


def display_available() -> bool:
    """True when a window can be opened: a display, and OpenCV built with a GUI backend."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        cv2.namedWindow(WINDOW)
    except cv2.error:
        return False
    return True


class Annotator:
    """Detects, estimates, smooths (for frame sequences) and records predictions."""

    def __init__(self, estimator, detector: FaceDetector):
        self.analyzer = FaceAnalyzer(estimator, detector)
        self.rows: list[dict] = []

    def annotate(
        self, image: np.ndarray, file: str, frame: int | None = None, tracker=None
    ) -> np.ndarray:
        faces, predictions = self.analyzer.estimate(image)
        boxes = [face.box for face in faces]
        if tracker is not None:
            predictions = tracker.update(boxes, predictions)
        self.rows += image_rows(file, image.shape, faces, predictions, frame)
        return draw_faces(image, boxes, predictions)

    def write_predictions(self, output_dir: Path) -> None:
        table = typed(self.rows)
        try:
            for name in PREDICTION_FILES:
                write_table(table, output_dir / name)
        except OSError as error:  # the folder made read-only, or moved, during the run
            raise cannot_write(output_dir / name, error) from error


WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def keeps_its_name(path: Path) -> bool:
    """Whether an image's annotated copy takes its name: its suffix is a format written here."""
    return path.suffix.lower() in WRITABLE_SUFFIXES


def annotated_names(paths: list[Path]) -> list[str]:
    """The annotated copies' file names: each input's, plus `.png` where its suffix is not a
    format written here (`photo`, `x.jpeg.bak`), numbered where that is another copy's name
    (`photo` and `photo.png`): two outputs of one run never share a path.

    A renamed copy's name depends on the names kept and on the renamed images before it in
    name order only, and a run does the images that keep their names first (`folder_plan`):
    so the images of a run that stopped early give the names of the very copies it wrote."""
    taken = {path.name for path in paths if keeps_its_name(path)}
    renamed = {}
    for path in sorted(path for path in paths if not keeps_its_name(path)):
        name, number = f"{path.name}.png", 1
        while name in taken:
            name, number = f"{path.name}-{number}.png", number + 1
        taken.add(name)
        renamed[path] = name
    return [renamed.get(path, path.name) for path in paths]


def write_image(path: Path, image: np.ndarray) -> None:
    """Writes an RGB image atomically, in the format its suffix names (bytes written by Python:
    any file name works)."""
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    try:
        if not ok:
            raise OSError(f"OpenCV cannot encode {path.suffix}")
        with atomic_output(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    except OSError as error:
        raise cannot_write(path, error) from error


PREDICTION_FILES = ["predictions.csv", "predictions.json"]
# The demo's outputs in a folder that its last finished run's tables do not name, one JSON
# string a line: the copies of a run killed before its tables (SIGKILL, a power cut) or stopped
# early, the tables of a run killed between them, and earlier runs' copies that a later run did
# not redo. A copy is listed once it is written, so a kill between the two leaves it unlisted:
# refused, never a user's file replaced; a name whose file is gone is dropped.
UNFINISHED = ".demo-unfinished.jsonl"


def unfinished_outputs(output_dir: Path) -> set[Path]:
    """The outputs `UNFINISHED` lists in `output_dir` (a line cut by a kill is passed over)."""
    try:
        lines = (output_dir / UNFINISHED).read_text().splitlines()
    except (OSError, ValueError):
        return set()
    names = set()
    for line in lines:
        try:
            name = json.loads(line)
        except ValueError:
            continue
        if isinstance(name, str) and Path(name).name == name:  # no other folder
            names.add(output_dir / name)
    return names


def start_unfinished(output_dir: Path) -> None:
    """Lists the outputs the folder already holds as the demo's (a finished run's and those of
    runs that did not finish) and this run's tables, before this run writes or replaces any: its
    copies follow one by one (`add_unfinished`)."""
    tables = {output_dir / name for name in PREDICTION_FILES}
    write_unfinished(output_dir, earlier_outputs(output_dir), also=tables)


def write_unfinished(output_dir: Path, outputs: set[Path], also: set[Path] = frozenset()) -> None:
    """Lists those of `outputs` that are there, and `also`, anew; or removes the list when
    there are none."""
    path = output_dir / UNFINISHED
    outputs = {output for output in outputs if output.is_file()} | also
    try:
        if not outputs:
            path.unlink(missing_ok=True)
            return
        with atomic_output(path) as temporary:
            lines = (f"{json.dumps(output.name)}\n" for output in sorted(outputs))
            temporary.write_text("".join(lines))  # ASCII: a name's odd bytes escaped
    except OSError as error:
        raise cannot_write(path, error, "remove it, or choose another --output_dir") from error


def add_unfinished(output_dir: Path, name: str) -> None:
    path = output_dir / UNFINISHED
    try:
        with open(path, "a") as listed:
            listed.write(f"{json.dumps(name)}\n")  # ASCII: a name's odd bytes escaped
    except OSError as error:
        raise cannot_write(path, error) from error


def finish_unfinished(output_dir: Path) -> None:
    """Once a run's tables list every copy it wrote, the list keeps only the outputs they do not
    name (earlier runs' copies of other images), or goes."""
    write_unfinished(output_dir, unfinished_outputs(output_dir) - finished_outputs(output_dir))


def earlier_outputs(output_dir: Path) -> set[Path]:
    """What earlier demo runs into `output_dir` wrote there: as the last finished run's
    predictions.csv records it (each name's bytes), the annotated copies of the images it read
    (named by the one rule, `annotated_names`), its video and the tables; and what unfinished
    runs wrote (`unfinished_outputs`). Nothing else in the folder is the demo's to replace."""
    return unfinished_outputs(output_dir) | finished_outputs(output_dir)


def finished_outputs(output_dir: Path) -> set[Path]:
    """The outputs predictions.csv in `output_dir` records (see `earlier_outputs`): only a CSV
    of the output schema with its JSON beside is a finished demo run's (annotate.py writes the
    same CSV, never the JSON; a run killed between the two lists them in `UNFINISHED`)."""
    if not (output_dir / "predictions.json").is_file():
        return set()
    try:
        table = read_csv_table(output_dir / "predictions.csv")
    except (OSError, ValueError):  # none, or not a table: nothing there is known to be ours
        return set()
    if list(table.columns) != COLUMNS:  # not the output schema, as the demo writes it
        return set()
    stills = table[table["frame"] == ""].drop_duplicates("file")
    names = annotated_names([Path(file) for file in stills["file"]])
    written = {name for name, status in zip(names, stills["status"], strict=True)
               if status != UNREADABLE}  # fmt: skip
    videos = {f"{file}.mp4" for file in table.loc[table["frame"] != "", "file"]}
    return {output_dir / name for name in written | videos | set(PREDICTION_FILES)}


def check_outputs(
    inputs: list[Path], names: list[str], output_dir: Path | None, overwrite: bool
) -> None:
    """Refuses, before any work, outputs (`names` and the tables, in `output_dir`) that would
    replace one of `inputs` or a file the demo did not write, or, without `overwrite`, an
    earlier run's output."""
    if output_dir is None:
        return
    remove_leftovers(output_dir, [*names, UNFINISHED])  # what a killed run was writing
    outputs = [output_dir / name for name in names]
    check_inputs_kept(outputs, inputs)
    existing = [path for path in outputs if path.exists()]
    ours = earlier_outputs(output_dir) if existing else set()
    foreign = [path for path in existing if path.is_file() and path not in ours]
    if foreign:
        others = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise UserError(
            f"{printable(str(foreign[0]))}{others} is not an output of an earlier demo run "
            f"there (neither its predictions.csv nor {UNFINISHED} lists it), so the demo will "
            "not replace it; move it or choose another --output_dir"
        )
    if existing and not overwrite:
        others = f" and {len(existing) - 1} more exist" if len(existing) > 1 else " exists"
        raise UserError(
            f"{existing[0]}{others} from an earlier run; pass --overwrite to replace them "
            "or choose another --output_dir"
        )


def folder_plan(
    folder: Path, output_dir: Path | None, overwrite: bool = False
) -> tuple[list[Path], list[str], list[Path]]:
    """The images of the folder, in the order they are done: those whose copies keep their
    names first (`annotated_names`), each group sorted by name; their annotated copies' names,
    and the other files. Refuses a folder without images, and outputs that would replace any
    of its files or, without `overwrite`, an earlier run's."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"image folder {folder} {what}")
    files = sorted(path for path in folder.iterdir() if path.is_file())
    images = sorted((path for path in files if is_image_file(path)),
                    key=lambda path: not keeps_its_name(path))  # fmt: skip
    if not images:
        raise UserError(f"no images in {folder}")
    names = annotated_names(images)
    check_outputs(files, [*names, *PREDICTION_FILES], output_dir, overwrite)
    return images, names, [path for path in files if path not in images]


def run_images(
    annotator: Annotator,
    images: list[Path],
    names: list[str],
    others: list[Path],
    output_dir: Path | None,
) -> None:
    """Annotates `images`: shown one by one, or written to `output_dir` as `names`; says how
    many files were skipped (`others`, and the images that cannot be read)."""
    unreadable = list(others)
    for path, name in tqdm(
        list(zip(images, names, strict=True)), desc="images", unit="image",
        disable=output_dir is None,
    ):  # fmt: skip
        image = read_image(path)
        if image is None:
            unreadable.append(path)
            annotator.rows.append(unreadable_row(path.name))
            continue
        done = len(annotator.rows)
        annotated = annotator.annotate(image, path.name)
        if output_dir is None:
            cv2.imshow(WINDOW, cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
            if cv2.waitKey(0) & 0xFF in (ord("q"), 27):
                break
            continue
        try:
            write_image(output_dir / name, annotated)
        except UserError:  # the table lists only the images whose copy was written
            del annotator.rows[done:]
            raise
        add_unfinished(output_dir, name)
    if unreadable:
        print(f"skipped {len(unreadable)} files that are not readable images (not an image, "
              f"cut short or corrupt), e.g. {printable(unreadable[0].name)}")  # fmt: skip
    if images and len(unreadable) - len(others) == len(images):
        raise UserError(f"none of the {len(images)} images in the folder could be read (not "
                        "images, cut short or corrupt); check --image_dir")  # fmt: skip


def frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def check_utf8(path: Path, refusal: str) -> None:
    """Refuses a path OpenCV's video reader or writer cannot take (the writer crashes on a name
    that is not UTF-8), with `refusal` after the path."""
    try:
        str(path).encode()
    except UnicodeEncodeError as error:
        raise UserError(f"{printable(str(path))}: {refusal}") from error


def open_capture(source: Path | int) -> cv2.VideoCapture:
    """Opens a video file or a camera index, or says in one line why it cannot."""
    if isinstance(source, int) and source < 0:
        raise UserError(f"--camera {source}: camera indices start at 0")
    if isinstance(source, Path):
        if not source.is_file():
            what = "is not a file" if source.exists() else "does not exist"
            raise UserError(f"video {source} {what}")
        check_utf8(source, "OpenCV cannot open a video whose name is not UTF-8; rename it")
        source = str(source)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise UserError(f"cannot open {what}; check that it exists and is readable")
    return capture


def run_video(
    annotator: Annotator, capture: cv2.VideoCapture, name: str, output_dir: Path | None
) -> None:
    """Annotates an opened video or camera with tracking; shows it or writes `<name>.mp4`."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    tracker = FaceTracker()
    writer, count = None, 0
    with atomic_output(output_dir / f"{name}.mp4") if output_dir else nullcontext() as temporary:
        try:
            for index, frame in enumerate(tqdm(frames(capture), total=total, unit="frame")):
                annotated = cv2.cvtColor(
                    annotator.annotate(frame, name, index, tracker), cv2.COLOR_RGB2BGR
                )
                count += 1
                if temporary is None:
                    cv2.imshow(WINDOW, annotated)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                    continue
                if writer is None:
                    size = annotated.shape[1], annotated.shape[0]
                    writer = cv2.VideoWriter(
                        str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, size
                    )
                writer.write(annotated)
        except KeyboardInterrupt:
            print("stopped; keeping what was recorded")
        finally:
            capture.release()
            if writer is not None:
                writer.release()
        if count == 0:
            raise UserError(f"no frame could be read from {name}")
