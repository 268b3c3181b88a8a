"""tf.data input pipeline: parallel decode, face crop, resize, augmentation, mixup, random erasing.

Crop, resize, rotation, zoom, shift and flip are one resampling per image (instead of a crop, a
resize and Keras augmentation layers that each resample again); photometric changes, random
erasing and mixup run on whole batches. Randomness comes from stateless ops seeded per element
by `tf.data.Dataset.random`, so a seed gives the same batches whatever the parallelism.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from age_gender import alignment
from age_gender.alignment import EYE_COLUMNS
from age_gender.labels import BOX_COLUMNS

AGE_CLASSES = 101
GENDER_CLASSES = 2
HEADS = ("pred_gender", "pred_age")  # the model's outputs, in order
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random changes made to training images; ranges are symmetric around no change.

    `enabled` switches the original project's augmentation (geometric and photometric); random
    erasing and mixup have their own switches (a probability and an alpha above 0).
    """

    enabled: bool = True
    shift: float = 0.03  # fraction of the image size
    scale: float = 0.2  # zoom by a factor in 1 +- scale
    rotation: float = 20.0  # degrees
    flip: bool = True
    brightness: float = 0.1  # fraction of 255
    contrast: float = 0.1  # factor in 1 +- contrast
    erasing_probability: float = 0.0
    erasing_area: tuple[float, float] = (0.02, 0.25)  # fraction of the image
    erasing_aspect: tuple[float, float] = (0.3, 3.3)  # height / width
    mixup_alpha: float = 0.0  # Beta(alpha, alpha); 0 disables mixup

    @property
    def changes_batches(self) -> bool:
        """Whether any batch-level stage (photometric, erasing, mixup) has work to do."""
        return self.enabled or self.erasing_probability > 0 or self.mixup_alpha > 0


# Checking files ---------------------------------------------------------------------------------


def unreadable_reason(path: str) -> str:
    """Why an image file failed to decode: missing, empty, not an image, truncated, or corrupt.

    Reads only the first and last bytes: a cut JPEG lacks its end marker, a cut PNG its IEND chunk.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            file.seek(max(0, file.seek(0, 2) - 1024))
            tail = file.read()
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return error.strerror or "unreadable"
    if not head:
        return "empty"
    if head.startswith(b"\xff\xd8"):
        return "corrupt JPEG" if b"\xff\xd9" in tail else "truncated JPEG"
    if head.startswith(b"\x89PNG"):
        return "corrupt PNG" if b"IEND" in tail[-64:] else "truncated PNG"
    if head.startswith((b"BM", b"GIF8")):
        return "corrupt image"
    return "not a JPEG, PNG, BMP or GIF"


def probe_image(path: tf.Tensor) -> tf.Tensor:
    """Decodes an image as the pipeline will, to find files that would fail there; its shape.

    JPEGs are decoded at 1/8 scale: that still reads every coded block, at a fraction of the cost.
    """
    contents = tf.io.read_file(path)
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.shape(tf.io.decode_jpeg(contents, channels=3, ratio=8)),
        lambda: tf.shape(decode_image(contents)),
    )


def drop_unreadable(frame: pd.DataFrame, root: Path, name: str = "images") -> pd.DataFrame:
    """Removes rows whose image the pipeline could not decode; one warning line gives the count
    and examples.

    Every image is decoded once, in parallel, by the pipeline's own decoder: a data set with a
    known number of images (and so of steps) is what keeps training from failing mid-run.
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
        for indices, _ in probes.as_numpy_iterator():
            decoded[indices] = True
            bar.update(len(indices))
    bad = np.flatnonzero(~decoded)
    if len(bad):
        examples = ", ".join(
            f"{frame['img_paths'].iloc[i]} ({unreadable_reason(paths[i])})" for i in bad[:3]
        )
        print(
            f"warning: skipping {len(bad)} of {len(frame)} {name} that cannot be read: {examples}"
        )
    return frame.drop(frame.index[bad]).reset_index(drop=True)


# Per-image work ---------------------------------------------------------------------------------


def decode_image(contents: tf.Tensor) -> tf.Tensor:
    """Any JPEG, PNG, BMP or GIF (grey, RGBA, 16-bit too) as RGB uint8 of shape (H, W, 3)."""
    return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)


def crop_box(image_shape: tf.Tensor, box: tf.Tensor, margin: float) -> tf.Tensor:
    """The face box widened by `margin` of its size on each side and clipped to the image.

    A box with x_max <= x_min means 'no box': the whole image is the face crop.
    """
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    x_min, y_min, x_max, y_max = tf.unstack(box)
    has_box = x_max > x_min
    box_width, box_height = x_max - x_min, y_max - y_min
    widened = tf.stack(
        [
            tf.clip_by_value(x_min - margin * box_width, 0.0, width),
            tf.clip_by_value(y_min - margin * box_height, 0.0, height),
            tf.clip_by_value(x_max + margin * box_width, 0.0, width),
            tf.clip_by_value(y_max + margin * box_height, 0.0, height),
        ]
    )
    return tf.where(has_box, widened, tf.stack([0.0, 0.0, width, height]))


def resample(image: tf.Tensor, box: tf.Tensor, size: int) -> tf.Tensor:
    """Crops `box` (pixels: x_min, y_min, x_max, y_max) and resizes it to size x size in one pass.

    Pixel centres are sampled as cv2.resize does, so evaluation crops match inference crops.
    """
    image_shape = tf.cast(tf.shape(image), tf.float32)
    x_min, y_min, x_max, y_max = tf.unstack(box)
    extent = tf.stack([y_max - y_min, x_max - x_min])
    corner = tf.stack([y_min, x_min])
    # First and last output pixel centres, in source pixel coordinates, over (size - 1) pixels.
    first = corner + extent * 0.5 / size - 0.5
    last = corner + extent - extent * 0.5 / size - 0.5
    y1, x1 = tf.unstack(first / (image_shape[:2] - 1))
    y2, x2 = tf.unstack(last / (image_shape[:2] - 1))
    return tf.image.crop_and_resize(
        image[None], tf.stack([y1, x1, y2, x2])[None], [0], [size, size]
    )[0]


def warp(
    image: tf.Tensor, box: tf.Tensor, size: int, angle=0.0, zoom=1.0, shift=(0.0, 0.0), flip=False
) -> tf.Tensor:
    """`resample` with the original project's geometric augmentation in the same pass.

    The output is the crop rotated by `angle` (radians) about its centre, zoomed by `zoom`,
    shifted by `shift` (fractions of the output) and mirrored when `flip`, black outside the
    image: what augmenting after resizing gives, with a single resampling of the source.
    """
    x_min, y_min, x_max, y_max = tf.unstack(box)
    width, height = x_max - x_min, y_max - y_min
    mirror = tf.where(flip, -1.0, 1.0)
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Source = box centre + (width, height) * (L p + shift), p = (pixel + 0.5) / size - 0.5.
    linear = ((mirror * cos, -sin), (mirror * sin, cos))
    offset = 0.5 / size - 0.5
    rows = []
    for (l0, l1), extent, centre, move in zip(
        linear, (width, height), ((x_min + x_max) / 2, (y_min + y_max) / 2), shift, strict=True
    ):
        rows += [
            extent * l0 / size,
            extent * l1 / size,
            centre - 0.5 + extent * (move + (l0 + l1) * offset),
        ]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=tf.stack([*rows, 0.0, 0.0])[None],
        output_shape=[size, size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def random_erasing(images: tf.Tensor, draws: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Paints one rectangle per image a random colour, with the paper's area and aspect ranges.

    `draws` holds 8 uniform numbers in [0, 1) per image. Written here because
    keras.layers.RandomErasing has no aspect range and no stateless seed.
    """
    size = tf.cast(tf.shape(images)[1], tf.float32)
    low, high = augmentation.erasing_area
    area = low + draws[:, 0] * (high - low)
    low, high = (math.log(value) for value in augmentation.erasing_aspect)
    aspect = tf.exp(low + draws[:, 1] * (high - low))
    height = tf.minimum(tf.round(size * tf.sqrt(area * aspect)), size)
    width = tf.minimum(tf.round(size * tf.sqrt(area / aspect)), size)
    top = tf.round(draws[:, 2] * (size - height))
    left = tf.round(draws[:, 3] * (size - width))
    erase = tf.cast(draws[:, 4] < augmentation.erasing_probability, tf.float32)
    positions = tf.range(size)[None]
    rows = (positions >= top[:, None]) & (positions < (top + height)[:, None])
    columns = (positions >= left[:, None]) & (positions < (left + width)[:, None])
    # An outer product of 0/1 rows and columns, then a blend: cheaper than a broadcast tf.where.
    rows = tf.cast(rows, tf.float32) * erase[:, None]
    inside = tf.einsum("bh,bw->bhw", rows, tf.cast(columns, tf.float32))[..., None]
    colours = draws[:, None, None, 5:8] * 255.0
    return images + inside * (colours - images)


def mixup(
    images: tf.Tensor, labels: dict, weights: dict, seed: tf.Tensor, alpha: float
) -> tuple[tf.Tensor, dict, dict]:
    """Mixes each sample with another of the batch; both heads' labels and loss weights use the
    image's lambda. A gender target mixed with an unknown gender (all zeros, weight 0) is
    renormalised, so the known part alone teaches gender, with its share as weight."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    batch = tf.shape(images)[0]
    first = tf.random.stateless_gamma([batch], seeds[0], alpha)
    second = tf.random.stateless_gamma([batch], seeds[1], alpha)
    weight = first / (first + second)
    partner = tf.argsort(tf.random.stateless_uniform([batch], seeds[2]))

    def mix(values: tf.Tensor) -> tf.Tensor:
        shape = tf.concat([[batch], tf.ones([tf.rank(values) - 1], tf.int32)], axis=0)
        lam = tf.reshape(weight, shape)
        return lam * values + (1.0 - lam) * tf.gather(values, partner)

    labels = {name: mix(values) for name, values in labels.items()}
    gender = labels["pred_gender"]
    labels["pred_gender"] = gender / tf.maximum(tf.reduce_sum(gender, -1, keepdims=True), 1e-6)
    return mix(images), labels, {name: mix(values) for name, values in weights.items()}


def load_example(
    example: dict,
    seed: tf.Tensor,
    size: int,
    margin: float,
    augmentation: Augmentation | None,
    align: bool = False,
) -> tuple[tf.Tensor, dict, dict]:
    """Decodes and crops one image, with random rotation, zoom, shift and flip when augmenting;
    its one-hot labels and per-head loss weights."""
    image = decode_image(tf.io.read_file(example["path"]))
    if align:  # the aligned box (margin included) and its angle, from the eyes
        box, angle = example["box"], example["angle"]
    else:
        box, angle = crop_box(tf.shape(image), example["box"], margin), 0.0
    if augmentation is None:
        image = warp(image, box, size, angle=angle) if align else resample(image, box, size)
    else:
        draws = tf.random.stateless_uniform([5], seed)
        signed = draws * 2 - 1
        image = warp(
            image,
            box,
            size,
            angle=angle + signed[0] * augmentation.rotation * math.pi / 180,
            zoom=1.0 + signed[1] * augmentation.scale,
            shift=(signed[2] * augmentation.shift, signed[3] * augmentation.shift),
            flip=augmentation.flip & (draws[4] < 0.5),
        )
    labels = {
        # An unknown gender (-1) gives an all-zero target, and a loss weight of 0.
        "pred_gender": tf.one_hot(example["gender"], GENDER_CLASSES),
        "pred_age": tf.one_hot(example["age"], AGE_CLASSES),
    }
    weights = {
        "pred_gender": tf.cast(example["gender"] >= 0, tf.float32),
        "pred_age": tf.constant(1.0),
    }
    return image, labels, weights


def augment_batch(
    images: tf.Tensor, labels: dict, weights: dict, seed: tf.Tensor, augmentation: Augmentation
) -> tuple[tf.Tensor, dict, dict]:
    """Brightness, contrast, random erasing and mixup, vectorised over the batch.

    Brightness and contrast follow albumentations' RandomBrightnessContrast, which the original
    project used: `image * contrast + brightness * 255`.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    draws = tf.random.stateless_uniform([tf.shape(images)[0], 10], seeds[0])
    if augmentation.enabled:
        signed = draws * 2 - 1
        contrast = 1.0 + signed[:, 0, None, None, None] * augmentation.contrast
        brightness = signed[:, 1, None, None, None] * augmentation.brightness * 255.0
        images = tf.clip_by_value(images * contrast + brightness, 0.0, 255.0)
    if augmentation.erasing_probability > 0:
        images = random_erasing(images, draws[:, 2:], augmentation)
    if augmentation.mixup_alpha > 0:
        images, labels, weights = mixup(images, labels, weights, seeds[1], augmentation.mixup_alpha)
    return images, labels, weights


# The data set -----------------------------------------------------------------------------------


def label_tensors(
    frame: pd.DataFrame, root: Path, align: bool = False, margin: float = 0.4
) -> dict[str, np.ndarray]:
    """Columns as arrays; rows without a face box get an empty one (0, 0, 0, 0). Aligned, the
    box is the aligned face (margin included) from the eye columns, with its angle."""
    angles = np.zeros(len(frame), np.float32)
    if align:
        aligned = [alignment.aligned_box(eyes, margin) for eyes in frame[EYE_COLUMNS].to_numpy()]
        boxes = np.array([box for box, _ in aligned], np.float32).reshape(-1, 4)
        angles = np.array([angle for _, angle in aligned], np.float32)
    elif all(column in frame.columns for column in BOX_COLUMNS):
        boxes = frame[BOX_COLUMNS].to_numpy(np.float32)
    else:
        boxes = np.zeros((len(frame), 4), np.float32)
    return {
        "path": np.array([str(root / path) for path in frame["img_paths"]]),
        "box": np.nan_to_num(boxes),
        "angle": angles,
        "age": frame["ages"].to_numpy(np.int32),
        "gender": frame["genders"].to_numpy(np.int32),
    }


def make_dataset(
    frame: pd.DataFrame,
    root: Path,
    img_size: int,
    batch_size: int,
    margin: float = 0.4,
    augmentation: Augmentation | None = None,
    shuffle: bool = False,
    seed: int = 0,
    align: bool = False,
) -> tf.data.Dataset:
    """Batches of (float32 RGB images 0..255, {"pred_gender", "pred_age"} one-hot labels), plus
    per-head loss weights (gender, age) when some gender is unknown (-1): those rows teach age
    only.

    Training sets pass `augmentation` and `shuffle=True`; evaluation sets pass neither. `align`
    crops each face turned so its eyes are level (the frame needs the eye columns). Rows must
    have passed `drop_unreadable`: the data set has a known number of batches (what Keras needs
    to run every epoch alike), so an image that fails to decode stops it.
    """
    examples = tf.data.Dataset.from_tensor_slices(label_tensors(frame, root, align, margin))
    if shuffle:
        examples = examples.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)
    geometric = augmentation if augmentation and augmentation.enabled else None

    def seeds(offset: int) -> tf.data.Dataset:
        """Two int64 per element: a stateless seed, new each epoch, the same for every run."""
        return tf.data.Dataset.random(seed=seed + offset, rerandomize_each_iteration=True).batch(2)

    dataset = tf.data.Dataset.zip(examples, seeds(0)).map(
        lambda example, example_seed: load_example(
            example, example_seed, img_size, margin, geometric, align
        ),
        num_parallel_calls=AUTOTUNE,
    )
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    if augmentation and augmentation.changes_batches:
        dataset = tf.data.Dataset.zip(dataset, seeds(1)).map(
            lambda batch, batch_seed: augment_batch(*batch, batch_seed, augmentation),
            num_parallel_calls=AUTOTUNE,
        )
    if (frame["genders"] < 0).any():  # loss weights only where some gender is unknown,
        # in the order of the model's outputs: Keras matches weights by position, not by name.
        dataset = dataset.map(
            lambda images, labels, weights: (images, labels, tuple(weights[h] for h in HEADS))
        )
    else:
        dataset = dataset.map(lambda images, labels, weights: (images, labels))
    options = tf.data.Options()
    # Several workers each take every n-th batch (the examples are in memory, not in files).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(AUTOTUNE)
