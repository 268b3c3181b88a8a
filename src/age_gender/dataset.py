"""tf.data input pipeline: parallel decode, face crop, resize, augmentation, mixup, random erasing.

Each image is OpenCV's work in one `tf.numpy_function`: one `cv2.imread`, one `cv2.warpAffine` for
the crop, resize, rotation, zoom, shift and flip, then brightness, contrast and random erasing on
the uint8 crop (OpenCV releases the GIL, so the parallel map uses every core, at 2-12x the speed
of TensorFlow's CPU image kernels). Mixup, the one stage that needs the batch, blends its uint8
images with OpenCV too. Randomness comes from stateless ops seeded per element by
`tf.data.Dataset.random`, so a seed gives the same batches whatever the parallelism.
"""

import dataclasses
import functools
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from age_gender import alignment, warping
from age_gender.alignment import EYE_COLUMNS
from age_gender.heads import AGE, AGE_CLASSES, GENDER, GENDER_CLASSES, HEADS
from age_gender.labels import BOX_COLUMNS

AGE_BALANCES = ("none", "lds")  # train.age_balance
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
    low_resolution: float = 0.0  # probabilities of a small face's losses: see `degrade`
    blur: float = 0.0
    jpeg: float = 0.0
    erasing_probability: float = 0.0
    erasing_area: tuple[float, float] = (0.02, 0.25)  # fraction of the image
    erasing_aspect: tuple[float, float] = (0.3, 3.3)  # height / width
    mixup_alpha: float = 0.0  # Beta(alpha, alpha); 0 disables mixup


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


IMAGE_DRAWS = 21  # uniform numbers per image: 5 geometric, 2 photometric, 8 erasing, 6 degrading


def load_face(
    path: bytes,
    box: np.ndarray,
    angle: float,
    draws: np.ndarray,
    size: int,
    margin: float,
    align: bool,
    augmentation: Augmentation | None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Reads the image at `path` and returns its face crop, size x size RGB uint8: cropped,
    resized and (with `augmentation` and its `draws`, IMAGE_DRAWS numbers in [0, 1)) turned,
    zoomed, shifted and flipped in one resampling, then brightness, contrast and erasing. The box
    is the face (the margin is added here), or with `align` the aligned box, margin included."""
    image = cv2.imread(path.decode(), cv2.IMREAD_COLOR)
    if image is None:  # drop_unreadable let it through, then the file changed
        raise ValueError(f"cannot read {path.decode()}")
    if not align:
        box = warping.crop_box(image.shape, box, margin, offset)
    if augmentation is None or not augmentation.enabled:
        face = warping.warp(image, box, size, angle=float(angle))
    else:
        signed = draws * 2 - 1
        face = warping.warp(
            image, box, size,
            angle=float(angle) + signed[0] * augmentation.rotation * math.pi / 180,
            zoom=1.0 + signed[1] * augmentation.scale,
            shift=signed[2:4] * augmentation.shift,
            flip=augmentation.flip and draws[4] < 0.5,
        )  # fmt: skip
        face = brightness_contrast(face, signed[5:7], augmentation)
        face = degrade(face, draws[15:21], augmentation)
    face = cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    if augmentation is not None and draws[7] < augmentation.erasing_probability:
        erase_rectangle(face, draws[8:], augmentation)
    return face


def brightness_contrast(face: np.ndarray, signed: np.ndarray, augmentation: Augmentation):
    """albumentations' RandomBrightnessContrast, which the original project used:
    `image * contrast + brightness * 255`, saturated to 0..255; `signed` in [-1, 1)."""
    contrast = 1.0 + signed[0] * augmentation.contrast
    return cv2.addWeighted(face, contrast, face, 0.0, signed[1] * augmentation.brightness * 255)


def degrade(face: np.ndarray, draws: np.ndarray, augmentation: Augmentation) -> np.ndarray:
    """What a small face in a photo loses, each with its probability: resolution (the crop
    shrunk to 25-100 % of its side and enlarged back), sharpness (a Gaussian blur of 0.5-1.5 px)
    and JPEG detail (re-encoded at quality 30-90); `draws` holds 6 numbers in [0, 1)."""
    size = face.shape[0]
    if draws[0] < augmentation.low_resolution:
        side = max(round(size * (0.25 + 0.75 * draws[1])), 1)
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        face = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if draws[2] < augmentation.blur:
        face = cv2.GaussianBlur(face, (0, 0), 0.5 + float(draws[3]))
    if draws[4] < augmentation.jpeg:
        quality = round(30 + 60 * float(draws[5]))
        _, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
        face = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return face


def erase_rectangle(face: np.ndarray, draws: np.ndarray, augmentation: Augmentation) -> None:
    """Random erasing (Zhong et al.): paints one rectangle a random colour, with the paper's area
    and aspect ranges; `draws` holds 7 numbers in [0, 1). Written here because
    keras.layers.RandomErasing has no aspect range and no stateless seed."""
    size = face.shape[0]
    low, high = augmentation.erasing_area
    area = low + draws[0] * (high - low)
    low, high = (math.log(value) for value in augmentation.erasing_aspect)
    aspect = math.exp(low + draws[1] * (high - low))
    height = min(round(size * math.sqrt(area * aspect)), size)
    width = min(round(size * math.sqrt(area / aspect)), size)
    top, left = round(draws[2] * (size - height)), round(draws[3] * (size - width))
    face[top : top + height, left : left + width] = np.round(draws[4:7] * 255)


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
    gender = labels[GENDER]
    labels[GENDER] = gender / tf.maximum(tf.reduce_sum(gender, -1, keepdims=True), 1e-6)
    mixed = tf.ensure_shape(
        tf.numpy_function(blend, [images, partner, weight], tf.uint8, stateful=False),
        images.shape,
    )
    return mixed, labels, {name: mix(values) for name, values in weights.items()}


def blend(images: np.ndarray, partner: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """weight * image + (1 - weight) * its partner's, for each uint8 image of the batch: OpenCV
    on uint8 moves a quarter of the bytes TensorFlow's float ops would."""
    return np.stack([
        cv2.addWeighted(image, float(lam), images[other], 1.0 - float(lam), 0.0)
        for image, other, lam in zip(images, partner, weight, strict=True)
    ])  # fmt: skip


def load_example(
    example: dict,
    seed: tf.Tensor,
    size: int,
    margin: float,
    augmentation: Augmentation | None,
    align: bool = False,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[tf.Tensor, dict, dict]:
    """Decodes and crops one image with OpenCV, with random rotation, zoom, shift and flip when
    augmenting (drawn here from the element's stateless seed); its one-hot labels and per-head
    loss weights."""
    if augmentation is None:
        draws = tf.zeros([0])
    else:
        draws = tf.random.stateless_uniform([IMAGE_DRAWS], seed)
    image = tf.numpy_function(
        functools.partial(
            load_face,
            size=size,
            margin=margin,
            align=align,
            augmentation=augmentation,
            offset=offset,
        ),
        [example["path"], example["box"], example["angle"], draws],
        tf.uint8,
        stateful=False,
    )
    image = tf.ensure_shape(image, [size, size, 3])
    labels = {
        # An unknown gender (-1) gives an all-zero target, and a loss weight of 0.
        GENDER: tf.one_hot(example["gender"], GENDER_CLASSES),
        AGE: tf.one_hot(example["age"], AGE_CLASSES),
    }
    weights = {
        GENDER: tf.cast(example["gender"] >= 0, tf.float32),
        AGE: example["age_weight"],
    }
    return image, labels, weights


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


def label_tensors(
    frame: pd.DataFrame,
    root: Path,
    align: bool = False,
    margin: float = 0.4,
    age_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Columns as arrays; rows without a face box get an empty one (0, 0, 0, 0). Aligned, the
    box is the aligned face (margin included) from the eye columns, with its angle. The age
    loss weight of each row is 1 unless `age_weights` are given."""
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
        "age_weight": np.ones(len(frame), np.float32) if age_weights is None else age_weights,
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
    age_weights: np.ndarray | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tf.data.Dataset:
    """Batches of (uint8 RGB images, {"pred_gender", "pred_age"} one-hot labels), plus
    per-head loss weights (gender, age) when some gender is unknown (-1): those rows teach age
    only.

    Training sets pass `augmentation` and `shuffle=True`; evaluation sets pass neither. `align`
    crops each face turned so its eyes are level (the frame needs the eye columns). Rows must
    have passed `drop_unreadable`: the data set has a known number of batches (what Keras needs
    to run every epoch alike), so an image that fails to decode stops it. `age_weights` (one per
    row, see `balanced_age_weights`) weigh the age loss; `offset` moves the crop as
    `warping.crop_box` says.
    """
    tensors = label_tensors(frame, root, align, margin, age_weights)
    examples = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        examples = examples.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True)

    def seeds(stream: int) -> tf.data.Dataset:
        """Two int64 per element: a stateless seed, new each epoch, the same for every run."""
        return tf.data.Dataset.random(seed=seed + stream, rerandomize_each_iteration=True).batch(2)

    dataset = tf.data.Dataset.zip(examples, seeds(0)).map(
        lambda example, example_seed: load_example(
            example, example_seed, img_size, margin, augmentation, align, offset
        ),
        num_parallel_calls=AUTOTUNE,
    )
    dataset = dataset.batch(batch_size, drop_remainder=shuffle)
    if augmentation and augmentation.mixup_alpha > 0:  # the one stage that needs the batch
        dataset = tf.data.Dataset.zip(dataset, seeds(1)).map(
            lambda batch, batch_seed: mixup(*batch, batch_seed, augmentation.mixup_alpha),
            num_parallel_calls=AUTOTUNE,
        )
    if (frame["genders"] < 0).any() or age_weights is not None:  # loss weights only if needed,
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
