"""Training pipeline throughput at 224 px with every augmentation, against a plain decode loop;
training from the face cache against training from full photographs; and (`--fit`) what the
input costs a training step.

Generates JPEGs of 200-400 px (like the IMDB-WIKI crops) once under the temp folder, then times
(a) the full tf.data training pipeline (all augmentations, erasing p = 0.5, mixup 0.2) and (b) a
single-threaded loop that only decodes and resizes the same files with OpenCV. Then 300 photos
of 1200x900 with a face box each (like IMDB-Clean's) are cached by cache_faces.py's code, and
the pipeline's images/s from the cache is compared with from the photos (goal: 5x). Last line:
pipeline_vs_plain_decode = (a) / (b), the median of 3 interleaved rounds; goal on 2 cores: at
least 1.0.

`--fit` times training steps of `utkface_cpu`'s model (and EfficientNetB0 at 224, and
`utkface_cpu_scratch`'s MobileNetV3Small at 96) fed by the
pipeline from 200 px JPEGs (UTKFace's size; `--data DIR` reads a UTKFace folder instead) over
the same steps fed the same batches from memory, alternating, the median of 3 rounds. Last
line: fit_input_cost; goal at most 1.05.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender.config import ErasingConfig, TrainConfig
from age_gender.data import dataset, face_cache
from age_gender.errors import ArgumentParser
from age_gender.faces.crops import CropSpec

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import synthetic  # noqa: E402

COUNT = 1500
SIZE = 224
ROUNDS = 3
CACHE = Path(tempfile.gettempdir()) / "age_gender_bench" / f"crops_{COUNT}"


def written_once(folder: Path, count: int, seed: int, draw) -> pd.DataFrame:
    """The labels of `count` JPEGs under `folder`, written the first time: `draw(rng, index)`
    gives each image and its row (img_paths included)."""
    labels_path = folder / "labels.csv"
    if not labels_path.exists():
        rng, rows = np.random.default_rng(seed), []
        for index in range(count):
            image, row = draw(rng, index)
            (folder / row["img_paths"]).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / row["img_paths"]), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            rows.append(row)
        pd.DataFrame(rows).to_csv(labels_path, index=False)
    return pd.read_csv(labels_path)


def build_images() -> pd.DataFrame:
    """Noisy disks of 200-400 px, like the IMDB-WIKI crops."""

    def draw(rng, index):
        side = int(rng.integers(200, 401))
        age, gender = int(rng.integers(0, 101)), int(rng.integers(0, 2))
        image = synthetic.disk_image(age, gender, side, rng)
        image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.integers(0, 40, image.shape, np.uint8)
        return image, {
            "genders": gender,
            "ages": age,
            "img_paths": f"{index % 100:02d}/{index:05d}.jpg",
        }

    return written_once(CACHE, COUNT, 0, draw)


def plain_decode_rate(frame: pd.DataFrame) -> float:
    start = time.perf_counter()
    for path in frame["img_paths"]:
        image = cv2.imread(str(CACHE / path))
        cv2.resize(image, (SIZE, SIZE))
    return len(frame) / (time.perf_counter() - start)


def pipeline_rate(frame: pd.DataFrame, root: Path = CACHE, epochs: int = 2) -> float:
    """Images/s of the full augmenting pipeline, over `epochs` epochs after a warm-up."""
    augmentation = TrainConfig(random_erasing=ErasingConfig(0.5), mixup_alpha=0.2)
    data = dataset.make_dataset(frame, root, CropSpec(SIZE), 32, augmentation, shuffle=True)
    for _ in data.take(5):  # warm-up: tracing, the first file reads, autotuning
        pass
    start, images = time.perf_counter(), 0
    for batch, _ in data.repeat(epochs):
        images += int(batch.shape[0])
    return images / (time.perf_counter() - start)


def build_photos(count: int = 300) -> pd.DataFrame:
    """1200x900 JPEGs with one face box each (random place, 250-450 px), like IMDB-Clean's."""

    def draw(rng, index):
        base = rng.integers(0, 256, (900 // 16, 1200 // 16, 3), np.uint8)
        image = cv2.resize(base, (1200, 900), interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 24, image.shape, np.uint8))
        side = int(rng.integers(250, 451))
        x, y = int(rng.integers(0, 1200 - side)), int(rng.integers(0, 900 - side))
        row = {"genders": 1, "ages": int(rng.integers(0, 101)), "img_paths": f"{index:04d}.jpg",
               "x_min": x, "y_min": y, "x_max": x + side, "y_max": y + side}  # fmt: skip
        return image, row

    return written_once(CACHE.with_name("photos_1200x900"), count, 1, draw)


def cache_vs_photos() -> float:
    """Images/s training from the face cache over images/s from the full photos."""
    photos = build_photos()
    root = CACHE.with_name("photos_1200x900")
    with tempfile.TemporaryDirectory() as folder:
        room = face_cache.room(20.0, 0.2, 0.03)
        crop = CropSpec(round(SIZE * 1.25))
        cached = face_cache.cache_faces(photos, root, Path(folder), crop, room, os.cpu_count())
        from_cache = pipeline_rate(cached, Path(folder), epochs=3)
    from_photos = pipeline_rate(photos, root, epochs=3)
    print(f"from 1200x900 photos: {from_photos:.0f} images/s; from the face cache: "
          f"{from_cache:.0f} images/s")  # fmt: skip
    return from_cache / from_photos


def utkface_like(count: int = 640) -> tuple[pd.DataFrame, Path]:
    """200x200 JPEGs without boxes (the whole image is the face), as UTKFace's."""

    def draw(rng, index):
        age, gender = int(rng.integers(0, 101)), int(rng.integers(0, 2))
        image = cv2.GaussianBlur(synthetic.disk_image(age, gender, 200, rng), (0, 0), 1.0)
        return image, {"genders": gender, "ages": age, "img_paths": f"{index:04d}.jpg"}

    folder = CACHE.with_name(f"utkface_like_{count}")
    return written_once(folder, count, 2, draw), folder


def step_ratio(overrides: list[str], frame: pd.DataFrame, root: Path, steps: int) -> float:
    """Seconds per training step fed by the pipeline over fed from memory, for the model and the
    fine-tuning phase (after any frozen epochs) that `overrides` configure."""
    import keras
    import tensorflow as tf

    from age_gender.config import compose_config
    from age_gender.models import model
    from age_gender.training import fit

    cfg = compose_config(overrides)
    keras.utils.set_random_seed(0)
    crop = CropSpec(cfg.model.img_size)
    network = model.build_model(
        cfg.model.model_name, crop, cfg.model.weights, cfg.model.dropout,
        cfg.model.batchnorm_momentum, feature_norm=cfg.model.feature_norm,
    )  # fmt: skip
    phase = fit.phases(cfg.train)[-1]
    fit.compile_for(network, cfg, tf.distribute.get_strategy(), steps, phase)
    batch = cfg.train.batch_size
    data = dataset.make_dataset(
        frame, root, crop, batch, fit.training_config(cfg), shuffle=True,
        age_weights=fit.age_weights(cfg, frame),
    ).repeat()  # fmt: skip
    kept = list(data.take(steps))  # a round's batches, repeated from memory
    memory = (
        tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda *parts: tf.stack(parts), *kept)
        )
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )

    def seconds_per_step(feed, count: int) -> float:
        start = time.perf_counter()
        network.fit(feed, steps_per_epoch=count, epochs=1, verbose=0)
        return (time.perf_counter() - start) / count

    seconds_per_step(memory, 2), seconds_per_step(data, 2)  # tracing, warm caches
    ratios, times = [], []
    for _ in range(ROUNDS):  # interleaved: a shared machine's speed drifts within a minute
        from_memory = seconds_per_step(memory, steps)
        from_files = seconds_per_step(data, steps)
        ratios.append(from_files / from_memory)
        times.append((from_files, from_memory))
    from_files, from_memory = np.median(times, axis=0)
    name = f"{cfg.model.model_name} {cfg.model.img_size} px, batch {batch}"
    print(f"{name}: {from_files * 1000:.0f} ms a step from files, {from_memory * 1000:.0f} ms "
          f"from memory (medians); ratios {', '.join(f'{r:.3f}' for r in ratios)}")  # fmt: skip
    return float(np.median(ratios))


def fit_main(data_dir: Path | None, steps: int) -> None:
    if data_dir is None:
        frame, root = utkface_like()
    else:
        from age_gender.data import labels

        frame, root = labels.read_utkface(data_dir).rows, data_dir
    print(f"{len(frame)} images from {root}, {os.cpu_count()} cores, {steps} steps each")
    efficientnet = step_ratio(
        ["model.model_name=EfficientNetB0", "model.weights=null", "model.img_size=224",
         "train.batch_size=32"], frame, root, steps,
    )  # fmt: skip
    scratch = step_ratio(["+experiment=utkface_cpu_scratch"], frame, root, steps)
    recipe = step_ratio(["+experiment=utkface_cpu"], frame, root, steps)
    print(f"fit_input_cost_efficientnetb0: {efficientnet:.3f}")
    print(f"fit_input_cost_utkface_cpu_scratch: {scratch:.3f}")
    print(f"fit_input_cost: {recipe:.3f}")


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="time training steps (see above)")
    parser.add_argument("--data", type=Path, help="--fit: a UTKFace folder instead of JPEGs")
    parser.add_argument("--steps", type=int, default=5, help="--fit: steps per feed and round")
    args = parser.parse_args()
    if args.fit:
        fit_main(args.data, args.steps)
        return
    frame = build_images()
    print(f"{len(frame)} JPEGs of 200-400 px, output {SIZE} px, {os.cpu_count()} cores")
    plain_decode_rate(frame)  # warm the page cache
    ratios = []
    for _ in range(ROUNDS):  # interleaved: a shared machine's speed drifts by 20 % in a minute
        plain, pipeline = plain_decode_rate(frame), pipeline_rate(frame, epochs=1)
        print(f"plain OpenCV decode + resize, 1 thread: {plain:.0f} images/s; tf.data "
              f"pipeline, all augmentations: {pipeline:.0f} images/s")  # fmt: skip
        ratios.append(pipeline / plain)
    print(f"cache_vs_full_images: {cache_vs_photos():.1f}")
    print(f"pipeline_vs_plain_decode: {np.median(ratios):.2f} (median of {ROUNDS})")


if __name__ == "__main__":
    main()
