"""Training pipeline throughput at 224 px with every augmentation, against a plain decode loop.

Generates JPEGs of 200-400 px (like the IMDB-WIKI crops) once under the temp folder, then times
(a) the full tf.data training pipeline and (b) a single-threaded loop that only decodes and
resizes the same files with OpenCV. Goal on 2 cores: (a) at least 1.6 x (b).
"""

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender import dataset, synthetic

COUNT = 1500
SIZE = 224
CACHE = Path(tempfile.gettempdir()) / "age_gender_bench" / f"crops_{COUNT}"


def build_images() -> pd.DataFrame:
    labels_path = CACHE / "labels.csv"
    if not labels_path.exists():
        rng = np.random.default_rng(0)
        rows = []
        for index in range(COUNT):
            side = int(rng.integers(200, 401))
            age, gender = int(rng.integers(0, 101)), int(rng.integers(0, 2))
            image = synthetic.disk_image(age, gender, side, rng)
            image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.integers(
                0, 40, image.shape, np.uint8
            )
            name = f"{index % 100:02d}/{index:05d}.jpg"
            (CACHE / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(CACHE / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            rows.append((gender, age, name))
        pd.DataFrame(rows, columns=["genders", "ages", "img_paths"]).to_csv(
            labels_path, index=False
        )
    return pd.read_csv(labels_path)


def plain_decode_rate(frame: pd.DataFrame) -> float:
    start = time.perf_counter()
    for path in frame["img_paths"]:
        image = cv2.imread(str(CACHE / path))
        cv2.resize(image, (SIZE, SIZE))
    return len(frame) / (time.perf_counter() - start)


def pipeline_rate(frame: pd.DataFrame) -> float:
    augmentation = dataset.Augmentation(erasing_probability=0.5, mixup_alpha=0.2)
    data = dataset.make_dataset(
        frame, CACHE, SIZE, 32, augmentation=augmentation, shuffle=True, seed=0
    )
    for _ in data.take(5):  # warm-up: tracing and the first file reads
        pass
    start, images = time.perf_counter(), 0
    for batch, _ in data:
        images += int(batch.shape[0])
    return images / (time.perf_counter() - start)


def main() -> None:
    frame = build_images()
    print(f"{len(frame)} JPEGs of 200-400 px, output {SIZE} px, {os.cpu_count()} cores")
    plain_decode_rate(frame)  # warm the page cache
    plain = plain_decode_rate(frame)
    pipeline = pipeline_rate(frame)
    print(f"plain OpenCV decode + resize, 1 thread: {plain:.0f} images/s")
    print(f"tf.data pipeline, all augmentations:  {pipeline:.0f} images/s")
    print(f"pipeline_vs_plain_decode: {pipeline / plain:.2f}")


if __name__ == "__main__":
    main()
