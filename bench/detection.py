"""Face detectors on real faces: recall by face size, false positives and time per frame.

python bench/detection.py --data data/UTKFace

DIR holds UTKFace's face crops (licence: non-commercial research only; nothing of them is
written outside --work). The held-out faces (create_db.py --val_fraction 0.1, the split the
accuracy benchmark keeps from training) are pasted into 640x480 photo backgrounds by
tests/support/scenes.py (35-230 px, turned up to 25 degrees, varied light, seeded); a face
counts as found at IoU >= 0.3 with its true box. Each detector runs on every frame in this
process, one at a time. Also measured on the crops: where MTCNN's box sits against HOG's on the
same faces (the mapping detection.MTCNN_TO_HOG applies) and how far its eyes are from dlib's
5-point predictor's.

Prints one table, writes detection_recall.png, and ends with `video_recall`, `video_ms` (the
default of video and the webcam: MTCNN at upsample 0), `detection_ms` and `detection_recall`
(the default for still images: MTCNN at upsample 1).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender.data.composites import PasteSettings, backgrounds_in
from age_gender.errors import ArgumentParser
from age_gender.faces import detection, framing
from age_gender.images import read_image
from age_gender.plots import plt, save_png
from age_gender.schema import BOX_COLUMNS

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import scenes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKGROUNDS = REPO / "examples" / "backgrounds"
BANDS = ((30, 45), (45, 90), (90, 240))  # true box sides, pixels
DETECTORS = {  # label: settings; the defaults are the two MTCNN ones at upsample 0 and 1
    "HOG upsample 0": detection.DetectorSpec("hog", 0),
    "HOG upsample 1": detection.DetectorSpec("hog", 1),
    "MTCNN upsample 0 (video default)": detection.DetectorSpec("mtcnn", 0),
    "MTCNN upsample 1 (images default)": detection.DetectorSpec("mtcnn", 1),
    "MTCNN upsample 2": detection.DetectorSpec("mtcnn", 2),
}


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="UTKFace's face crops")
    parser.add_argument("--work", type=Path, default=Path("output/detection"))
    parser.add_argument("--scenes", type=int, default=120, help="scene frames to build")
    parser.add_argument("--backgrounds", type=Path, default=BACKGROUNDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--package", action="store_true",
        help="also time the mtcnn package's own (eager TensorFlow) pipeline on the same "
        "frames (pip install 'mtcnn>=1.0,<2')",
    )  # fmt: skip
    return parser.parse_args()


def held_out_faces(args: argparse.Namespace) -> pd.DataFrame:
    """The validation split of create_db.py, as the accuracy benchmark makes it."""
    meta = (args.work / "meta").resolve()
    meta.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "create_db.py", "--db", "utkface", "--data_dir",
                    str(args.data.resolve()), "--val_fraction", "0.1", "--output",
                    str(meta / "utkface.csv"), "--overwrite"], cwd=REPO, check=True)  # fmt: skip
    return pd.read_csv(meta / "utkface_val.csv")


def measure(detect, frames: list[tuple[str, np.ndarray]], truth: pd.DataFrame) -> dict:
    """Recall overall and per size band, false positives per frame, median ms per frame."""
    rows, times = [], []
    detect(frames[0][1])  # traced and warmed before timing
    for name, image in frames:
        started = time.perf_counter()
        boxes = detect(image)
        times.append(time.perf_counter() - started)
        rows += [{"file": name, **dict(zip(BOX_COLUMNS, box, strict=True))} for box in boxes]
    found = pd.DataFrame(rows, columns=["file", *BOX_COLUMNS])
    matched = scenes.match_faces(truth, found)
    hit = matched["iou"].notna()
    side = truth["x_max"] - truth["x_min"]
    return {
        "recall": float(hit.mean()),
        **{f"{low}-{high} px": float(hit[(side >= low) & (side < high)].mean())
           for low, high in BANDS},
        "false_positives_per_frame": matched.attrs["false_positives"] / len(frames),
        "ms": 1000 * float(np.median(times)),
        "iou": float(matched["iou"].mean()),
    }  # fmt: skip


def package_pipeline():
    """The mtcnn package's MTCNN as published (eager TensorFlow), boxes in HOG's convention."""
    from mtcnn import MTCNN

    detector = MTCNN()

    def detect(image: np.ndarray) -> list[tuple]:
        found = detector.detect_faces(image, box_format="xyxy")
        return [detection.mtcnn_to_hog(np.asarray(face["box"], float)) for face in found
                if face["confidence"] >= detection.MIN_SCORES["mtcnn"]]  # fmt: skip

    return detect


def box_mapping(paths: list[Path], seed: int) -> tuple[dict, float, int]:
    """On faces both find: HOG's box against MTCNN's raw box (medians of width and height
    ratios, centre shifts in MTCNN box sizes), and the median distance of MTCNN's eyes from
    the 5-point predictor's, in eye distances. Each crop is scaled at random and padded, as
    `framing.measure_framing` meets it."""
    from age_gender.faces import crops, mtcnn
    from age_gender.faces.eye_finder import eye_finder

    hog = detection.DetectorSpec("hog").build()
    rng = np.random.default_rng(seed)
    ratios, eye_errors = [], []
    for path in paths:
        image = read_image(path)
        scale = float(np.exp(rng.uniform(np.log(0.5), np.log(1.2))))
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        pad = max(image.shape[:2]) // 4
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found, (boxes, landmarks) = hog.detect(image), mtcnn.detect(image, 20)
        if not found or not len(boxes) or boxes[0, 4] < detection.MIN_SCORES["mtcnn"]:
            continue
        if crops.iou(found[0].box, [detection.mtcnn_to_hog(boxes[0])])[0] < 0.5:
            continue  # not the same face
        x_min, y_min, x_max, y_max = found[0].box
        mx_min, my_min, mx_max, my_max = boxes[0, :4]
        width, height = mx_max - mx_min, my_max - my_min
        ratios.append(((x_max - x_min) / width, (y_max - y_min) / height,
                       ((x_min + x_max) - (mx_min + mx_max)) / 2 / width,
                       ((y_min + y_max) - (my_min + my_max)) / 2 / height))  # fmt: skip
        theirs = eye_finder().eyes(image, found[0].box).reshape(2, 2)
        ours = landmarks[0, :2]
        distance = np.linalg.norm(theirs[1] - theirs[0])
        eye_errors.append(float(np.linalg.norm(ours - theirs, axis=1).mean() / distance))
    medians = np.median(np.asarray(ratios), axis=0)
    mapping = dict(zip(("width", "height", "dx", "dy"), medians.round(3).tolist(), strict=True))
    return mapping, float(np.median(eye_errors)), len(ratios)


def plot_recall(figures: dict[str, dict], path: Path) -> None:
    """Bars of recall per face-size band, one group per band, one bar per detector."""
    figure, axis = plt.subplots(figsize=(10, 4), constrained_layout=True)
    bands = [f"{low}-{high} px" for low, high in BANDS]
    width = 0.8 / len(figures)
    for index, (label, figure_set) in enumerate(figures.items()):
        positions = np.arange(len(bands)) + index * width
        axis.bar(positions, [figure_set[band] for band in bands], width, label=label)
    axis.set_xticks(np.arange(len(bands)) + width * (len(figures) - 1) / 2, bands)
    axis.set(ylabel="recall (IoU >= 0.3)", ylim=(0, 1.05), xlabel="true face box side",
             title="Faces found in 640x480 scenes of held-out UTKFace faces")  # fmt: skip
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.grid(axis="y", alpha=0.3)
    save_png(figure, path)


def main() -> None:
    args = parse_args()
    held_out = held_out_faces(args)
    backgrounds = backgrounds_in(args.backgrounds)
    # True boxes sit where HOG boxes these crops (the convention every detector is mapped to).
    measured = framing.framing_of_crops(held_out, args.data, 300, args.seed)
    paste = PasteSettings(margin=measured.margin, offset=measured.offset)
    settings = scenes.SceneSettings(paste=paste)
    made = scenes.build_scenes(held_out, args.data, backgrounds, args.scenes, args.seed, settings)
    truth = scenes.write_scenes(made, args.work / "frames")
    frames = [(name, read_image(args.work / "frames" / name)) for name in sorted(set(truth.file))]
    print(f"{os.cpu_count()} cores; {len(frames)} frames, {len(truth)} faces; the scenes' "
          f"framing: margin {measured.margin}, offset {measured.offset}")  # fmt: skip

    figures = {}
    for label, spec in DETECTORS.items():
        detector = spec.build()
        figures[label] = measure(lambda image, d=detector: [f.box for f in d.detect(image)],
                                 frames, truth)  # fmt: skip
    if args.package:
        figures["mtcnn package, eager (min face 20)"] = measure(package_pipeline(), frames, truth)

    sample = held_out.sample(n=min(400, len(held_out)), random_state=args.seed)
    mapping, eye_error, pairs = box_mapping([args.data / p for p in sample.img_paths], args.seed)

    print("| detector | recall | " + " | ".join(f"{lo}-{hi} px" for lo, hi in BANDS)
          + " | false positives / frame | ms / frame | mean IoU |")  # fmt: skip
    print("| --- " * (len(BANDS) + 5) + "|")
    for label, entry in figures.items():
        bands = " | ".join(f"{entry[f'{lo}-{hi} px']:.2f}" for lo, hi in BANDS)
        print(f"| {label} | {entry['recall']:.3f} | {bands} | "
              f"{entry['false_positives_per_frame']:.3f} | {entry['ms']:.1f} | "
              f"{entry['iou']:.2f} |")  # fmt: skip
    print(f"MTCNN box -> HOG box on {pairs} faces both found: measured {mapping}, "
          f"applied {detection.MTCNN_TO_HOG}")  # fmt: skip
    print(f"MTCNN eyes against dlib's 5-point predictor: {eye_error:.3f} eye distances apart")
    plot_recall(figures, args.work / "detection_recall.png")
    print(f"plot: {args.work / 'detection_recall.png'}")
    video = figures["MTCNN upsample 0 (video default)"]
    still = figures["MTCNN upsample 1 (images default)"]
    print(f"video_recall: {video['recall']:.3f}")
    print(f"video_ms: {video['ms']:.1f}")
    print(f"detection_ms: {still['ms']:.1f}")
    print(f"detection_recall: {still['recall']:.3f}")


if __name__ == "__main__":
    main()
