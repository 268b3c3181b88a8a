"""Training faces as a detector hands them to the model: each face crop pasted into a photo
background (feathered edges, a random size, turn and light), found there by the model's own
detector, and written once, so an epoch costs no detection.

A data set of tight, upright crops (UTKFace) teaches a model crops; users hand it a detector's
boxes of faces of any size and turn in photos. Trained on these composites, it learns the
detector's box, its eyes (for `data.upright`), small faces and foreign backgrounds. A face the
detector cannot find in its composite is kept as its crop. The benchmark's scenes
(`tests/support/scenes.py`) paste faces the same way.
"""

import dataclasses
import functools
import hashlib
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from age_gender import jobs
from age_gender.errors import UserError
from age_gender.faces import crops
from age_gender.faces.detection import DetectorSpec
from age_gender.files import atomic_output, cannot_write, identity, remove_leftovers
from age_gender.images import SUFFIXES, read_image, read_note, with_note
from age_gender.schema import BOX_COLUMNS, EYE_COLUMNS

FOLDER = "composites"
CROPS = "crops"  # the crops themselves, with_crops
JPEG_QUALITY = 92
MATCH_IOU = 0.3  # a detection is the pasted face when it overlaps its box this much


@dataclasses.dataclass(frozen=True)
class PasteSettings:
    """How faces are pasted: their box size range (pixels; log-uniform), the largest turn
    (degrees), light (gain and offset ranges), the framing of the crops (margin and offset of
    the face box in them, as `framing.Framing` measures UTKFace's), and the background around
    the face (in face sizes on each side)."""

    face_sizes: tuple[int, int] = (35, 230)
    max_angle: float = 25.0
    gain: tuple[float, float] = (0.6, 1.3)
    bias: tuple[float, float] = (-30.0, 30.0)
    margin: float = 0.06
    offset: tuple[float, float] = (0.01, 0.01)
    context: float = 0.75


def backgrounds_in(folder: Path) -> list[Path]:
    """The background photos of `folder`, each read once now (a photo that cannot be read
    stops the run before any composite, not midway), or one line saying what is wrong."""
    paths = sorted(path for path in folder.glob("*") if path.suffix.lower() in SUFFIXES)
    if not folder.is_dir() or not paths:
        raise UserError(f"no background photos in {folder}: give a folder of photos without "
                        "faces (e.g. examples/backgrounds)")  # fmt: skip
    for path in paths:
        background_photo(path, identity(path))
    return paths


@functools.lru_cache(maxsize=8)  # 8 phone photos: about 300 MB a process
def background_photo(path: Path, version: str) -> np.ndarray:
    """A background photo, decoded once per process and `version` (`files.identity`): every
    face pasted into it would decode it again (about a fifth of a composite's time)."""
    image = read_image(path)
    if image is None:
        raise UserError(f"background {path} cannot be read (not an image, cut short or "
                        "corrupt): remove it from the folder")  # fmt: skip
    image.setflags(write=False)  # shared by every face: a paste works on a copy
    return image


def background(paths: list[Path], rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random part of a random background photo, scaled to cover `size` (width, height)."""
    path = paths[rng.integers(len(paths))]
    image = background_photo(path, identity(path))
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0]) * rng.uniform(1.0, 1.5)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)
    top = rng.integers(max(image.shape[0] - height, 0) + 1)
    left = rng.integers(max(image.shape[1] - width, 0) + 1)
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def feather_mask(height: int, width: int) -> np.ndarray:
    """An elliptic alpha mask (0..1) with soft edges: the crop's corners and borders vanish."""
    mask = np.zeros((height, width), np.float32)
    axes = (int(width * 0.42), int(height * 0.47))
    cv2.ellipse(mask, (width // 2, height // 2), axes, 0, 0, 360, 1.0, -1)
    blur = max(min(height, width) // 10, 1) * 2 + 1
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def paste_face(
    frame: np.ndarray,
    crop: np.ndarray,
    box_side: float,
    centre: tuple[float, float],
    angle: float,
    light: tuple[float, float],
    settings: PasteSettings,
) -> tuple[float, ...]:
    """Pastes `crop` (RGB) into `frame` turned by `angle` degrees so that its face box is
    `box_side` pixels wide with its centre at `centre`; returns that face's upright box."""
    scale = box_side / (crop.shape[1] / (1 + 2 * settings.margin))
    # The face box's centre sits at the crop centre minus the offset, in box sizes.
    face_x = crop.shape[1] / 2 - settings.offset[0] * crop.shape[1] / (1 + 2 * settings.margin)
    face_y = crop.shape[0] / 2 - settings.offset[1] * crop.shape[0] / (1 + 2 * settings.margin)
    matrix = cv2.getRotationMatrix2D((face_x, face_y), angle, scale)
    matrix[:, 2] += np.array(centre) - (face_x, face_y)
    height, width = frame.shape[:2]
    lit = cv2.convertScaleAbs(crop, alpha=light[0], beta=light[1])
    warped = cv2.warpAffine(lit, matrix, (width, height), flags=cv2.INTER_AREA)
    alpha = cv2.warpAffine(feather_mask(*crop.shape[:2]), matrix, (width, height))[..., None]
    frame[:] = (frame * (1 - alpha) + warped * alpha).round().astype(np.uint8)
    half = box_side / 2
    return centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half


def random_look(rng: np.random.Generator, settings: PasteSettings) -> tuple[float, float, tuple]:
    """A face's box side (log-uniform: small faces as common as large ones), turn and light."""
    low, high = settings.face_sizes
    side = math.exp(rng.uniform(math.log(low), math.log(high)))
    angle = rng.uniform(-settings.max_angle, settings.max_angle)
    return side, angle, (rng.uniform(*settings.gain), rng.uniform(*settings.bias))


def composite(
    crop: np.ndarray, backgrounds: list[Path], rng: np.random.Generator, settings: PasteSettings
) -> tuple[np.ndarray, tuple[float, ...]]:
    """One face crop pasted into a background `settings.context` face sizes wider on each side:
    the image and the face's true box."""
    side, angle, light = random_look(rng, settings)
    extent = math.ceil(side * (1 + 2 * settings.context))
    frame = background(backgrounds, rng, (extent, extent))
    box = paste_face(frame, crop, side, (extent / 2, extent / 2), angle, light, settings)
    return frame, box


@functools.cache
def detector(spec: DetectorSpec):
    """The process's detector (each worker builds its own)."""
    return spec.build()


def composite_name(
    path: Path,
    index: int,
    seed: int,
    settings: PasteSettings,
    spec: DetectorSpec,
    places: str,
) -> str:
    """A face's composite file, named by what defines it (its crop, its row, the seed, how it is
    pasted, into which backgrounds (`places_key`), and found; the files by `files.identity`), so
    a run with other settings, or after a crop or background is replaced in place, never
    reuses it."""
    key = f"{identity(path)}|{index}|{seed}|{settings}|{spec}|{places}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{FOLDER}/{digest[:2]}/{digest[2:18]}.jpg"


def places_key(backgrounds: list[Path]) -> str:
    """The background photos as one composite's name takes them: each file's identity."""
    return "|".join(identity(photo) for photo in backgrounds)


def placement_note(path: Path) -> dict | None:
    """The box and eyes a whole composite records (None: missing, cut, or not one of ours)."""
    note = read_note(path)
    try:
        values = np.array([*(note["box"] or [np.nan] * 4), *(note["eyes"] or [np.nan] * 4)], float)
    except (TypeError, KeyError, ValueError):
        return None
    return note if values.shape == (8,) else None


def make_composite(task: tuple) -> tuple[int, dict | str]:
    """Writes one face's composite with the detector's box and eyes in a JPEG comment (its
    crop as it is, without a box, where the detector does not find it); its row's note, or why
    there is none."""
    index, source, target, seed, backgrounds, settings, spec = task
    crop = read_image(Path(source))
    if crop is None:
        return index, "cannot be read"
    rng = np.random.default_rng([seed, index])
    image, truth = composite(crop, backgrounds, rng, settings)
    found = [face for face in detector(spec).detect(image)
             if crops.iou(truth, [face.box])[0] >= MATCH_IOU]  # fmt: skip
    if found:
        eyes = found[0].eyes
        note = {"box": list(found[0].box), "eyes": None if eyes is None else list(eyes)}
    else:
        image, note = crop, {"box": None, "eyes": None}
    _, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    data = with_note(encoded.tobytes(), note)
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as temporary:
            temporary.write_bytes(data)
    except OSError as error:
        folder = f"composites in {target.parent.parent}"
        raise cannot_write(folder, error, "choose another --output_dir") from None
    return index, note


def make_composites(
    frame: pd.DataFrame,
    root: Path,
    output_dir: Path,
    backgrounds: list[Path],
    spec: DetectorSpec,
    workers: int,
    seed: int = 0,
    settings: PasteSettings = PasteSettings(),
    with_crops: bool = False,
) -> pd.DataFrame:
    """The composites of the face crops of `frame` (whole images under `root`, no boxes) in
    `output_dir`, found by the detector `spec`: the rows with img_paths in it, the detector's
    box and eyes (none where it found no face). Composites written whole before are kept (a
    resume); a crop that cannot be read is left out. `with_crops`: each face found in its
    composite also keeps a row of its crop as it is (copied into `crops/`), so a model learns
    both the data set's crops and the detector's boxes."""
    if set(BOX_COLUMNS) & set(frame.columns) and frame[BOX_COLUMNS].notna().any().any():
        raise UserError("these rows have face boxes: composites are made of face crops (the "
                        "whole image is the face), as UTKFace's")  # fmt: skip
    places = places_key(backgrounds)
    names = [composite_name(root.resolve() / path, index, seed, settings, spec, places)
             for index, path in enumerate(frame["img_paths"])]  # fmt: skip
    remove_leftovers(output_dir / FOLDER, {Path(name).name for name in names}, recursive=True)
    notes: list[dict | None] = [placement_note(output_dir / name) for name in names]
    done = sum(note is not None for note in notes)
    if done:
        print(f"resuming: {done} of {len(frame)} composites are made already")
    tasks = [(index, str(root / frame["img_paths"].iloc[index]), str(output_dir / names[index]),
              seed, backgrounds, settings, spec)
             for index, note in enumerate(notes) if note is None]  # fmt: skip
    unreadable = []
    with (
        jobs.failing_in_one_line("making composites"),
        jobs.WorkerPool(workers) as pool,
        tqdm(total=len(frame), initial=done, desc="composites", unit="face") as bar,
    ):
        for index, note in pool.map(make_composite, tasks, chunksize=32):
            if isinstance(note, str):
                unreadable.append(index)
            else:
                notes[index] = note
            bar.update()
    if unreadable:
        print(f"warning: skipped {len(unreadable)} crops that cannot be read, e.g. "
              f"{frame['img_paths'].iloc[unreadable[0]]}")  # fmt: skip
    kept = [index for index, note in enumerate(notes) if note is not None]
    if not kept:
        raise UserError(f"no crop of the {len(frame)} rows can be read: is {root} the folder "
                        "the CSV's img_paths are relative to?")  # fmt: skip
    placed = np.array([[*(notes[i]["box"] or [np.nan] * 4), *(notes[i]["eyes"] or [np.nan] * 4)]
                       for i in kept], float)  # fmt: skip
    result = frame.iloc[kept].assign(img_paths=[names[i] for i in kept]).reset_index(drop=True)
    result[BOX_COLUMNS] = placed[:, :4]
    result[EYE_COLUMNS] = placed[:, 4:]
    found = int(np.isfinite(placed[:, 0]).sum())
    print(f"composites: the detector found {found} of {len(kept)} faces "
          f"({found / len(kept):.1%}); the others are kept as their crops")  # fmt: skip
    if with_crops:
        result = pd.concat([result, crop_rows(frame, root, output_dir, kept, placed)],
                           ignore_index=True)  # fmt: skip
    return result


def crop_rows(
    frame: pd.DataFrame, root: Path, output_dir: Path, kept: list[int], placed: np.ndarray
) -> pd.DataFrame:
    """Rows of the crops (copied into `crops/`, once) of the faces found in their composites:
    the others are their crops already."""
    indices = [index for index, row in zip(kept, placed, strict=True) if np.isfinite(row[0])]
    names = []
    for index in indices:
        source = root / frame["img_paths"].iloc[index]
        digest = hashlib.sha1(identity(source).encode("utf-8", "surrogateescape"))
        name = f"{CROPS}/{digest.hexdigest()[:16]}{source.suffix.lower()}"
        target = output_dir / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(target) as temporary:
                shutil.copyfile(source, temporary)
        names.append(name)
    return frame.iloc[indices].assign(img_paths=names)


def write_rows(rows: pd.DataFrame, path: Path) -> None:
    """The composites' labels CSV, written whole or not at all."""
    with atomic_output(path) as temporary:
        rows.to_csv(temporary, index=False)
