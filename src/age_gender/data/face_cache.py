"""A face cache: every labelled face of a CSV cropped once, so training decodes small JPEGs.

For IMDB-Clean, whose images are the full photographs, decoding is most of the input cost; a face
crop of a few hundred pixels decodes 5-30x faster, every epoch. Each cached image holds the
training crop (the face box widened by the margin, clipped to the image) at `scale` x the
training size, in the middle of room for every augmented view (rotation, zoom out, shift), black
outside the original image as augmentation makes it. The new CSV's box is the face's place in the
cached image and its bounds the photo's (recorded in each cached file too, for a resume), so
training on it at the cache's margin or a smaller one samples the same pixels as training on the
originals; a larger margin is refused (`dataset.check_cache_columns`).
"""

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from age_gender import jobs
from age_gender.data import labels
from age_gender.errors import UserError
from age_gender.faces import crops
from age_gender.faces.crops import CropSpec, is_box
from age_gender.files import atomic_output, cannot_write, identity, remove_leftovers
from age_gender.images import decode_image, file_bytes, read_note, with_note
from age_gender.schema import BOUNDS_COLUMNS, BOX_COLUMNS, CACHE_MARGIN

JPEG_QUALITY = 95
FOLDER = "faces"
MAX_SIDE = 4096  # pixels: a cached face this wide is already 50 MB decoded


def room(rotation: float, zoom: float, shift: float) -> float:
    """How much wider than the training crop the cache keeps: the farthest source point any
    augmented view samples, with rotation up to `rotation` degrees, zoom out to 1 - `zoom` and a
    shift up to `shift` of the crop."""
    angle = math.radians(rotation)
    return (abs(math.cos(angle)) + abs(math.sin(angle))) / (1.0 - zoom) + 2.0 * shift


def cached_name(path: Path, box: np.ndarray, margin: float, side: int) -> str:
    """The cached file of one face, named by what defines its pixels (the image file itself,
    by its real path, size and time of change; the box, margin and size), so a run can tell what
    is done and another CSV or --root naming other images never reuses it."""
    key = f"{identity(path)}|{box.tolist()}|{margin}|{side}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{FOLDER}/{digest[:2]}/{digest[2:18]}.jpg"


def geometry(shape: tuple, box: np.ndarray, crop: CropSpec, room_factor: float):
    """Where one face's cached image lies in its photo (`region`: the training crop, clipped to
    the photo as every crop is, widened `room_factor` times about its centre), and, in the cached
    image's pixels, the face box and the photo's bounds (eight numbers): a crop of the cached
    image at any margin up to `crop.margin`, clipped to those bounds, is the photo's crop. A row
    without a box (the photo is a face crop) gets the bounds as its box: whole at every margin."""
    (x_min, y_min, x_max, y_max), _ = crops.region(shape, crop, box)
    centre_x, centre_y = (x_min + x_max) / 2, (y_min + y_max) / 2
    half_width, half_height = (x_max - x_min) * room_factor / 2, (y_max - y_min) * room_factor / 2
    region = np.array([centre_x - half_width, centre_y - half_height,
                       centre_x + half_width, centre_y + half_height])  # fmt: skip
    side = round(crop.size * room_factor)
    scale = side / (region[2:] - region[:2])
    height, width = shape[:2]
    face = box if is_box(box) else [0.0, 0.0, width, height]  # a crop: the whole photo, always
    corners = np.array([*np.asarray(face, float), 0.0, 0.0, width, height])
    return region, ((corners - np.tile(region[:2], 4)) * np.tile(scale, 4)).tolist()


def cached_placement(path: Path) -> list[float] | None:
    """The face box and photo bounds (`geometry`) a whole cached face records; None when it is
    missing, cut (a full disk, by hand) or written without them (an older version)."""
    try:
        placement = np.array((read_note(path) or {})["placement"], float)
    except (ValueError, KeyError, TypeError):
        return None
    if placement.shape != (8,) or not np.isfinite(placement).all():
        return None
    box, bounds = placement.reshape(2, 2, 2)  # each (x_min, y_min), (x_max, y_max)
    return placement.tolist() if (box[1] > box[0]).all() and (bounds[1] > bounds[0]).all() else None


def cache_face(task: tuple) -> tuple[int, tuple[int, list[float]] | str]:
    """Writes one face's cached image (temporary name, then rename); its row, and its size in
    bytes with its placement (`geometry`), or why it cannot be cached (the image cannot be
    read, the box lies outside it)."""
    index, source, target, box, crop, room_factor = task
    try:
        image = decode_image(file_bytes(source), rgb=False)  # strict: a cut JPEG is not cached
    except OSError:
        image = None
    if image is None:
        return index, "cannot be read"
    if not crops.overlaps(image.shape, box, crop.margin):
        return index, "box outside the image"
    region, placement = geometry(image.shape, box, crop, room_factor)
    face = crops.warp(image, region, round(crop.size * room_factor))
    ok, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    data = with_note(encoded.tobytes(), {"placement": placement})
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as temporary:  # a full disk: its own line
            temporary.write_bytes(data)
    except OSError as error:  # the cache's folder, not this face: every face would fail
        folder = f"the face cache in {target.parent.parent}"
        raise cannot_write(folder, error, "choose another --output_dir") from None
    return index, (len(data), placement)


def cache_faces(
    frame: pd.DataFrame,
    root: Path,
    output_dir: Path,
    crop: CropSpec,
    room_factor: float,
    workers: int,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Caches the faces of `frame` (images under `root`) in `output_dir`: `crop` (the training
    crop at the cached size) in the middle of `room_factor` times its side; the rows of the faces
    cached, with img_paths and boxes in the cache. Faces already cached whole are not done
    again (a cut one is), unless `overwrite`; refuses a frame of which no face can be cached."""
    if any(column in frame.columns for column in (*BOUNDS_COLUMNS, CACHE_MARGIN)):
        raise UserError("these rows are a face cache's already: cache the CSV they came from")
    if crop.aligned or any(column.startswith("eye_") for column in frame.columns):
        raise UserError("the face cache holds unaligned crops: train aligned models "
                        "(data.align=true) from the original images")  # fmt: skip
    boxes = labels.face_boxes(frame)
    if len(frame) and not is_box(boxes).any():
        # Training measures where a detector's box sits in box-less crops (`framing`); cached,
        # they would have boxes, and the model would record data.margin instead.
        raise UserError("no row has a face box: these are face crops, small already; train on "
                        "them directly (the face cache is for photos with boxes)")  # fmt: skip
    side = round(crop.size * room_factor)
    names = [cached_name(root / path, box, crop.margin, side)
             for path, box in zip(frame["img_paths"], boxes, strict=True)]  # fmt: skip
    remove_leftovers(output_dir / FOLDER, {Path(name).name for name in names}, recursive=True)
    placements = np.full((len(frame), 8), np.nan)
    for index, name in enumerate(names):
        placement = None if overwrite else cached_placement(output_dir / name)
        if placement is not None:
            placements[index] = placement
    done = ~np.isnan(placements[:, 0])
    if done.any():
        print(f"resuming: {done.sum()} of {len(frame)} faces are cached already")
    tasks = [
        (index, str(root / frame["img_paths"].iloc[index]), str(output_dir / names[index]),
         boxes[index], crop, room_factor)
        for index in np.flatnonzero(~done)
    ]  # fmt: skip
    readable = np.ones(len(frame), bool)
    written, skipped = 0, {}
    with (
        jobs.failing_in_one_line("caching faces"),
        jobs.WorkerPool(workers) as pool,
        tqdm(total=len(frame), initial=int(done.sum()), desc="caching", unit="face") as bar,
    ):
        for index, result in pool.map(cache_face, tasks, chunksize=64):
            if isinstance(result, str):
                readable[index] = False
                skipped.setdefault(result, []).append(index)
            else:
                written += result[0]
                placements[index] = result[1]
            bar.update()
    for reason, indices in skipped.items():
        print(f"warning: skipped {len(indices)} faces: {reason}, e.g. "
              f"{frame['img_paths'].iloc[indices[0]]}")  # fmt: skip
    if not readable.any():
        reasons = ", ".join(f"{len(indices)} {reason}" for reason, indices in skipped.items())
        raise UserError(f"no face of the {len(frame)} rows could be cached ({reasons}): is "
                        f"{root} the folder the CSV's img_paths are relative to?")  # fmt: skip
    result = frame.assign(img_paths=names)
    result[BOX_COLUMNS] = placements[:, :4]
    result[BOUNDS_COLUMNS] = placements[:, 4:]
    result[CACHE_MARGIN] = crop.margin
    used = sum((output_dir / name).stat().st_size for name in set(np.array(names)[readable]))
    print(f"cache: {readable.sum()} faces, {used / 2**20:.1f} MiB on disk "
          f"({written / 2**20:.1f} MiB written by this run)")  # fmt: skip
    return result[readable].reset_index(drop=True)
