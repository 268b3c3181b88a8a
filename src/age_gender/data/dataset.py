"""tf.data input pipeline: batches of face crops, augmented, mixed up and erased, made by OpenCV.

One Python call per batch does all of its images' work: read, decode with the one image reader
(RGB from the decoder itself), one `cv2.warpAffine` for the crop (the one every estimator takes),
resize, rotation, zoom, shift and flip, then brightness, contrast, small-face losses and random
erasing on the uint8 crop, and mixup's blend. The images of a batch are split between the
threads of a pool, one share each: OpenCV's kernels release the GIL, so every core decodes.
tf.data carries the batches (prefetch, sharding, distribution strategies). Every random draw of
a batch comes from the batch's stateless seed, so a seed gives the same batches whatever the
parallelism.
"""

import concurrent.futures
import functools
import math
import os
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from age_gender import images
from age_gender.config import AugmentConfig, ErasingConfig, TrainConfig
from age_gender.data import labels
from age_gender.errors import UserError
from age_gender.faces import crops
from age_gender.faces.crops import CropSpec
from age_gender.schema import (
    AGE,
    AGE_CLASSES,
    BOUNDS_COLUMNS,
    CACHE_MARGIN,
    GENDER,
    GENDER_CLASSES,
    HEADS,
)

AUTOTUNE = tf.data.AUTOTUNE


# Checking files ---------------------------------------------------------------------------------


def probe_image(path: tf.Tensor) -> tf.Tensor:
    """A JPEG's (height, width, channels) from its header, once TensorFlow's strict decoder has
    read it (one whose coded data is scrambled fails there, where OpenCV would return noise) at
    1/8 scale, which still reads every coded block at a fraction of the cost; (1, 1, 3) for other
    files, left to `images.readable_file`."""
    contents = tf.io.read_file(path)

    def jpeg_shape() -> tf.Tensor:
        decoded = tf.io.decode_jpeg(contents, channels=3, ratio=8)
        with tf.control_dependencies([decoded]):
            return tf.image.extract_jpeg_shape(contents)

    return tf.cond(tf.io.is_jpeg(contents), jpeg_shape, lambda: tf.constant([1, 1, 3]))


def drop_unreadable(frame: pd.DataFrame, root: Path, name: str = "images") -> pd.DataFrame:
    """Removes rows whose image could not be decoded; one warning line gives the count and
    examples.

    Every image is checked, in parallel, by the one reader's rule (`images.readable_file`: any
    format OpenCV decodes), JPEGs also by TensorFlow's strict decoder: a data set with a known
    number of images (and so of steps) is what keeps training from failing mid-run.
    """
    paths = [str(root / path) for path in frame["img_paths"]]
    probes = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
        .map(lambda index, path: (index, probe_image(path)), num_parallel_calls=AUTOTUNE)
        .ignore_errors()
        .batch(256)
    )
    decoded = np.zeros(len(paths), bool)
    with tqdm(
        total=len(paths), desc=f"checking {name}", unit="image", leave=False, mininterval=1
    ) as bar:
        for indices, shapes in probes.as_numpy_iterator():
            # OpenCV, the pipeline's reader, refuses more pixels than this; TensorFlow does not.
            decoded[indices] = shapes[:, 0] * shapes[:, 1] <= images.MAX_PIXELS
            bar.update(len(indices))
    decoded &= np.fromiter(thread_pool().map(images.readable_file, paths), bool, len(paths))
    bad = np.flatnonzero(~decoded)
    if len(bad):
        examples = ", ".join(
            f"{frame['img_paths'].iloc[i]} ({images.unreadable_reason(paths[i])})" for i in bad[:3]
        )
        print(
            f"warning: skipping {len(bad)} of {len(frame)} {name} that cannot be read: {examples}"
        )
    return frame.drop(frame.index[bad]).reset_index(drop=True)


# Per-image work ---------------------------------------------------------------------------------


IMAGE_DRAWS = 21  # uniform numbers per image: 5 geometric, 2 photometric, 8 erasing, 6 degrading


def load_face(
    path: bytes,
    box: np.ndarray,
    eyes: np.ndarray,
    bounds: np.ndarray,
    draws: np.ndarray | None,
    crop: CropSpec,
    train: TrainConfig | None,
    out: np.ndarray,
) -> None:
    """Writes into `out` the face crop of one image, crop.size x crop.size RGB uint8: with
    `train`'s augmentation and its `draws` (IMAGE_DRAWS numbers in [0, 1)) turned, zoomed,
    shifted and flipped in the one resampling, then brightness, contrast, small-face losses and
    erasing; without, the crop every estimator takes of the same face. `box` is the face
    (x_max <= x_min: the whole image), `eyes` its eyes for an aligned crop, `bounds` where the
    original image lies in a face cache's (NaN: the image is the original)."""
    name = path.decode(errors="surrogateescape")
    try:
        data = images.file_bytes(name)
    except OSError as error:  # drop_unreadable let it through, then the file changed
        raise ValueError(f"cannot read {name}: {error.strerror}") from error
    augment = train.augment if train is not None else None
    image = images.decode_image(data)
    if image is None:
        raise ValueError(f"cannot read {name}")
    within = None if np.isnan(bounds).any() else bounds
    source, angle = crops.region(image.shape, crop, box, eyes, within)
    if augment is None or not augment.enabled:
        face = crops.warp(image, source, crop.size, angle=angle)
    else:
        signed = draws * 2 - 1
        face = crops.warp(
            image, source, crop.size,
            angle=angle + signed[0] * augment.rotation * math.pi / 180,
            zoom=1.0 + signed[1] * augment.scale,
            shift=signed[2:4] * augment.shift,
            flip=augment.flip and draws[4] < 0.5,
        )  # fmt: skip
        brightness_contrast(face, signed[5:7], augment)
        face = degrade(face, draws[15:21], augment)
    if train is not None and draws[7] < train.random_erasing.probability:
        erase_rectangle(face, draws[8:15], train.random_erasing)
    out[...] = face


def brightness_contrast(face: np.ndarray, signed: np.ndarray, augment: AugmentConfig) -> None:
    """albumentations' RandomBrightnessContrast, which the original project used, in place:
    `image * contrast + brightness * 255`, saturated to 0..255; `signed` in [-1, 1). A lookup
    table of the 256 values, one pass over the pixels."""
    contrast = 1.0 + signed[0] * augment.contrast
    values = np.arange(256, dtype=np.float32) * contrast + signed[1] * augment.brightness * 255
    cv2.LUT(face, np.clip(np.rint(values), 0, 255).astype(np.uint8), dst=face)


def degrade(face: np.ndarray, draws: np.ndarray, augment: AugmentConfig) -> np.ndarray:
    """What a small face in a photo loses, each with its probability: resolution (the crop
    shrunk to 25-100 % of its side and enlarged back), sharpness (a Gaussian blur of 0.5-1.5 px)
    and JPEG detail (re-encoded at quality 30-90); `draws` holds 6 numbers in [0, 1)."""
    size = face.shape[0]
    if draws[0] < augment.low_resolution:
        side = max(round(size * (0.25 + 0.75 * draws[1])), 1)
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        face = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if draws[2] < augment.blur:
        face = cv2.GaussianBlur(face, (0, 0), 0.5 + float(draws[3]))
    if draws[4] < augment.jpeg:
        quality = round(30 + 60 * float(draws[5]))
        bgr = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)  # the encoder's order: its luma is right
        _, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        face = cv2.imdecode(encoded, cv2.IMREAD_COLOR_RGB)
    return face


def erase_rectangle(face: np.ndarray, draws: np.ndarray, erasing: ErasingConfig) -> None:
    """Random erasing (Zhong et al.): paints one rectangle a random colour, with the paper's area
    and aspect ranges; `draws` holds 7 numbers in [0, 1). Written here because
    keras.layers.RandomErasing has no aspect range and no stateless seed."""
    size = face.shape[0]
    low, high = erasing.area
    area = low + draws[0] * (high - low)
    low, high = (math.log(value) for value in erasing.aspect)
    aspect = math.exp(low + draws[1] * (high - low))
    height = min(round(size * math.sqrt(area * aspect)), size)
    width = min(round(size * math.sqrt(area / aspect)), size)
    top, left = round(draws[2] * (size - height)), round(draws[3] * (size - width))
    face[top : top + height, left : left + width] = np.round(draws[4:7] * 255)


@functools.cache
def thread_count() -> int:
    """One thread per core the process may use (a container's limit included)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return len(usable) if usable else os.cpu_count() or 1


@functools.cache
def thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's threads for the images of a batch: OpenCV releases the GIL as it works."""
    return concurrent.futures.ThreadPoolExecutor(
        thread_count(), "age_gender_images", initializer=yield_to_the_model
    )


def yield_to_the_model() -> None:
    """Lowers the calling thread's priority (Linux: niceness per thread): on a CPU, the model's
    threads, which wait for each other at every op, then run first, and the images are made in
    the time they leave; on an idle machine nothing changes. Only a hint: where a sandbox
    refuses it, the threads run as they are."""
    if sys.platform.startswith("linux"):  # elsewhere a priority is the whole process's
        thread = threading.get_native_id()
        try:
            niceness = min(os.getpriority(os.PRIO_PROCESS, thread) + 10, 19)
            os.setpriority(os.PRIO_PROCESS, thread, niceness)
        except OSError:
            pass


def load_faces(
    paths: np.ndarray,
    boxes: np.ndarray,
    eyes: np.ndarray,
    bounds: np.ndarray,
    draws: np.ndarray,
    partner: np.ndarray,
    weight: np.ndarray,
    crop: CropSpec,
    train: TrainConfig | None,
) -> np.ndarray:
    """One batch's face crops (N, size, size, 3) uint8, by `load_face` over the thread pool (each
    thread takes every n-th image: one task per thread, not per image), then mixed up (`blend`)
    when `partner` is given."""
    faces = np.empty((len(paths), crop.size, crop.size, 3), np.uint8)
    threads = min(thread_count(), len(paths))

    def load(first: int) -> None:
        for index in range(first, len(paths), threads):
            load_face(
                paths[index], boxes[index], eyes[index], bounds[index],
                draws[index] if len(draws) else None, crop, train, faces[index],
            )  # fmt: skip

    list(thread_pool().map(load, range(threads)))
    return blend(faces, partner, weight) if len(partner) else faces


def blend(faces: np.ndarray, partner: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mixup of images: weight * face + (1 - weight) * its partner's, on uint8 (a quarter of the
    bytes float ops would move)."""
    mixed = np.empty_like(faces)
    for index, (other, lam) in enumerate(zip(partner, weight, strict=True)):
        cv2.addWeighted(faces[index], float(lam), faces[other], 1.0 - float(lam), 0.0,
                        dst=mixed[index])  # fmt: skip
    return mixed


def mixup_draws(count: tf.Tensor, seed: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Each sample's partner in the batch and its own share, lambda ~ Beta(alpha, alpha)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    first = tf.random.stateless_gamma([count], seeds[0], alpha)
    second = tf.random.stateless_gamma([count], seeds[1], alpha)
    partner = tf.argsort(tf.random.stateless_uniform([count], seeds[2]))
    return partner, first / (first + second)


def mix_labels(labels: dict, weights: dict, partner: tf.Tensor, lam: tf.Tensor):
    """Mixup of both heads' labels and loss weights with the image's lambda. A gender target
    mixed with an unknown gender (all zeros, weight 0) is renormalised, so the known part alone
    teaches gender, with its share as weight."""

    def mix(values: tf.Tensor) -> tf.Tensor:
        shape = tf.concat([tf.shape(lam), tf.ones([tf.rank(values) - 1], tf.int32)], axis=0)
        share = tf.reshape(lam, shape)
        return share * values + (1.0 - share) * tf.gather(values, partner)

    labels = {name: mix(values) for name, values in labels.items()}
    gender = labels[GENDER]
    labels[GENDER] = gender / tf.maximum(tf.reduce_sum(gender, -1, keepdims=True), 1e-6)
    return labels, {name: mix(values) for name, values in weights.items()}


def load_batch(
    batch: dict, seed: tf.Tensor, crop: CropSpec, train: TrainConfig | None, size: int | None
) -> tuple[tf.Tensor, dict, dict]:
    """A batch's images (`load_faces`, one Python call), one-hot labels and per-head loss
    weights, with its random draws taken from the batch's seed; `size`: its number of images
    when every batch has it (None: the last may be smaller)."""
    count = tf.shape(batch["age"])[0]
    draw_seed, mixup_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    draws = tf.zeros([0, IMAGE_DRAWS])
    partner, lam = tf.zeros([0], tf.int32), tf.zeros([0])
    if train is not None:
        draws = tf.random.stateless_uniform([count, IMAGE_DRAWS], draw_seed)
        if train.mixup_alpha > 0:  # the one stage that needs the whole batch
            partner, lam = mixup_draws(count, mixup_seed, train.mixup_alpha)
    images = tf.numpy_function(
        functools.partial(load_faces, crop=crop, train=train),
        [batch["path"], batch["box"], batch["eyes"], batch["bounds"], draws, partner, lam],
        tf.uint8,
        stateful=False,
    )
    images = tf.ensure_shape(images, [size, crop.size, crop.size, 3])
    labels = {
        # An unknown gender (-1) gives an all-zero target, and a loss weight of 0.
        GENDER: tf.one_hot(batch["gender"], GENDER_CLASSES),
        AGE: tf.one_hot(batch["age"], AGE_CLASSES),
    }
    known = tf.cast(batch["gender"] >= 0, tf.float32)
    weights = {GENDER: known * batch["gender_weight"], AGE: batch["age_weight"]}
    if train is not None and train.mixup_alpha > 0:
        labels, weights = mix_labels(labels, weights, partner, lam)
    return images, labels, weights


# The data set -----------------------------------------------------------------------------------


def balanced_age_weights(ages: np.ndarray, sigma: float = 2.0, power: float = 0.5) -> np.ndarray:
    """Per-face loss weights against the skew of ages: the inverse of the age frequency smoothed
    by a Gaussian of `sigma` years (label distribution smoothing, Yang et al., ICML 2021: a rare
    age borrows its neighbours' counts), to the `power` (0.5: square-root inverse), mean 1."""
    from scipy.ndimage import gaussian_filter1d

    counts = np.bincount(np.asarray(ages, int), minlength=AGE_CLASSES).astype(float)
    smoothed = gaussian_filter1d(counts, sigma, mode="constant")
    weights = np.maximum(smoothed[np.asarray(ages, int)], 1e-6) ** -power
    return (weights / weights.mean()).astype(np.float32)


def balanced_group_weights(groups: pd.Series, power: float = 0.5) -> np.ndarray:
    """Per-face loss weights that let each group of `groups` (a label column, e.g. UTKFace's
    race) weigh alike: the group's frequency to the -`power` (1: every group as much as every
    other; 0.5: half way), mean 1. A missing value is a group of its own."""
    codes, _ = pd.factorize(groups, use_na_sentinel=False)
    weights = np.bincount(codes)[codes].astype(float) ** -power
    return (weights / weights.mean()).astype(np.float32)


def label_tensors(
    frame: pd.DataFrame,
    root: Path,
    age_weights: np.ndarray | None = None,
    gender_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Columns as arrays: rows without a face box get an empty one (`labels.face_boxes`), rows
    without eyes (and rows not from a face cache, without bounds) NaN ones. The loss weights of
    each row are 1 unless `age_weights` or `gender_weights` are given."""
    bounds = np.full((len(frame), 4), np.nan, np.float32)
    if set(BOUNDS_COLUMNS) <= set(frame.columns):
        bounds = frame[BOUNDS_COLUMNS].to_numpy(np.float32)

    return {
        "path": np.array([str(root / path) for path in frame["img_paths"]]),
        "box": labels.face_boxes(frame),
        "eyes": labels.eye_values(frame),
        "bounds": bounds,
        "age": frame["ages"].to_numpy(np.int32),
        "gender": frame["genders"].to_numpy(np.int32),
        "age_weight": np.ones(len(frame), np.float32) if age_weights is None else age_weights,
        "gender_weight": (
            np.ones(len(frame), np.float32) if gender_weights is None else gender_weights
        ),
    }


def check_cache_columns(frame: pd.DataFrame, margin: float) -> None:
    """Refuses a face cache's rows that are not whole (a column missing, a value that is not a
    number, bounds inverted: an edited or cut CSV) and a crop wider than the cache holds: its
    faces crop as from the photos at the cache's margin or any smaller one only."""
    columns = [*BOUNDS_COLUMNS, CACHE_MARGIN]
    present = [column for column in columns if column in frame.columns]
    if not present:
        return
    if len(present) < len(columns):
        missing = ", ".join(column for column in columns if column not in present)
        raise UserError(f"the face cache's CSV lacks {missing}: use the CSV cache_faces.py "
                        "wrote, or cache again")  # fmt: skip
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values).all(axis=1) | (values[:, 4] < 0)
    bad |= (values[:, 2] <= values[:, 0]) | (values[:, 3] <= values[:, 1])
    if bad.any():
        raise UserError(f"{bad.sum()} rows of the face cache's CSV have bounds or a "
                        f"cache_margin that are not numbers with x_min < x_max, y_min < y_max "
                        f"(e.g. row {np.flatnonzero(bad)[0] + 2}): use the CSV cache_faces.py "
                        "wrote, or cache again")  # fmt: skip
    if len(frame) and margin > values[:, 4].min():
        cached = values[:, 4].min()
        raise UserError(f"the face cache holds crops of margin {cached:g}, narrower than "
                        f"data.margin={margin:g}: cache again with data.margin={margin:g}, or "
                        f"train with data.margin<={cached:g}")  # fmt: skip


def make_dataset(
    frame: pd.DataFrame,
    root: Path,
    crop: CropSpec,
    batch_size: int,
    train: TrainConfig | None = None,
    shuffle: bool = False,
    seed: int = 0,
    age_weights: np.ndarray | None = None,
    gender_weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of (uint8 RGB images, {"pred_gender", "pred_age"} one-hot labels), plus
    per-head loss weights (gender, age) when some gender is unknown (-1) or `age_weights` or
    `gender_weights` (one per row, see `balanced_age_weights`, `balanced_group_weights`) are
    given: rows of unknown gender teach age only.

    The training set passes `train` (its augment, random_erasing and mixup_alpha, drawn from
    `seed`) and `shuffle` (anew each epoch); evaluation sets pass neither and get the crops every
    estimator takes (`crop`: size, margin, offset, aligned by the eye columns). Rows must have
    passed `drop_unreadable`: the data set has a known number of batches (what Keras needs to
    run every epoch alike), so an image that fails to decode stops it.
    """
    check_cache_columns(frame, crop.margin)
    tensors = label_tensors(frame, root, age_weights, gender_weights)
    examples = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        examples = examples.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    # Two int64 per batch: a stateless seed, new each epoch, the same for every run.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip(examples.batch(batch_size, drop_remainder=shuffle), seeds)
    dataset = dataset.map(
        lambda batch, batch_seed: load_batch(
            batch, batch_seed, crop, train, batch_size if shuffle else None
        ),
        num_parallel_calls=AUTOTUNE,
    )
    weighted = age_weights is not None or gender_weights is not None
    if (frame["genders"] < 0).any() or weighted:  # loss weights only if needed,
        # in the order of the model's outputs: Keras matches weights by position, not by name.
        dataset = dataset.map(
            lambda images, labels, weights: (images, labels, tuple(weights[h] for h in HEADS))
        )
    else:
        dataset = dataset.map(lambda images, labels, weights: (images, labels))
    options = tf.data.Options()
    # Several workers: each makes every batch and keeps its share of it (the examples are in
    # memory, not in files, so there is nothing to split by file).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(AUTOTUNE)
