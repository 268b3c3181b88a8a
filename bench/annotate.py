"""annotate.py against demo.py --image_dir on the same photos, the same model and detector.

Writes 500 JPEGs of 400-800 px with one to three faces each (the example astronaut, flipped,
scaled and placed at random: no network), then times both on them in this process: the demo
(decode, detect, estimate the image's faces, draw, write the annotated copy, one image at a
time, as `demo.py --image_dir DIR --output_dir OUT` runs) and the annotation (worker processes
for decoding and detection, the model on batches of faces across images). Both use the default
detector settings for images (MTCNN, upsample 1; --detector hog for the original's) and
EfficientNetB3 at 224 (random weights: they
do not change the timing; --weight_file takes another, an exported ONNX file say). Prints
images/s of both, faces/s and peak memory; the last line is annotate_vs_demo = annotate's
images/s / the demo's. Goal on 2 cores: at least 1.8.
"""

import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from age_gender import jobs
from age_gender.apps import annotation, demo
from age_gender.errors import ArgumentParser
from age_gender.estimators.presets import load_estimator
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DETECTORS, DetectorSpec

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import synthetic  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


class WorkerMemory:
    """The largest peak resident memory (VmHWM) of this process's children, polled in a thread.

    getrusage(RUSAGE_CHILDREN) would count a spawned worker's memory before its exec: a copy of
    this process, TensorFlow included."""

    def __init__(self):
        self.peak_kib = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.wait(0.2):
            for children in Path("/proc/self/task").glob("*/children"):
                for pid in children.read_text().split():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:  # finished meanwhile
                        continue
                    peak = [line for line in status.splitlines() if line.startswith("VmHWM")]
                    if peak:
                        self.peak_kib = max(self.peak_kib, int(peak[0].split()[1]))

    def __enter__(self) -> "WorkerMemory":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    import keras  # here, not above: the spawned workers import this script, not TensorFlow

    from age_gender.models import model

    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument(
        "--weight_file", type=Path, help="a model for both (default: EfficientNetB3 at 224)"
    )
    parser.add_argument("--detector", choices=DETECTORS, default=DETECTORS[0])
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {args.images} photos, {args.workers} workers")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        portrait = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
        paths = synthetic.write_face_photos(folder / "photos", portrait, args.images)
        if args.weight_file:
            estimator = load_estimator(args.weight_file)
        else:
            network = model.build_model("EfficientNetB3", CropSpec(224), weights=None)
            network.save(folder / "b3.keras")
            keras.backend.clear_session()
            estimator = load_estimator(folder / "b3.keras")
        size = estimator.crop_spec.size
        estimator.predict_crops(np.zeros((1, size, size, 3), np.uint8))  # traced before timing

        detector = DetectorSpec(args.detector, upsample=1).build()  # images' default, in both
        annotator = demo.Annotator(estimator, detector)
        (folder / "demo").mkdir()
        started = time.perf_counter()
        demo.run_images(annotator, paths, [path.name for path in paths], [], folder / "demo")
        annotator.write_predictions(folder / "demo")
        demo_rate = len(paths) / (time.perf_counter() - started)
        demo_faces = sum(1 for row in annotator.rows if "age" in row)

        names = [path.name for path in paths]
        finding = annotation.FaceFinding(detector.spec, estimator.crop_spec)
        output = folder / "faces.parquet"
        parts = jobs.Parts(output, {"bench": True}, overwrite=True)
        started = time.perf_counter()
        with WorkerMemory() as workers:
            table = annotation.annotate(
                names,
                folder / "photos",
                output,
                estimator,
                finding,
                parts,
                args.workers,
                args.batch_size,
                256,
            )
        elapsed = time.perf_counter() - started
    faces = int(table["face"].notna().sum())
    assert faces == demo_faces, f"annotate found {faces} faces, the demo {demo_faces}"
    rate = len(paths) / elapsed
    main_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mib = workers.peak_kib / 1024
    print(f"demo.py --image_dir: {demo_rate:.2f} images/s")
    print(f"annotate.py: {rate:.2f} images/s, {faces / elapsed:.1f} faces/s ({faces} faces)")
    print(f"peak memory: {main_mib:.0f} MiB (main, with the model), {worker_mib:.0f} MiB "
          "(largest worker)")  # fmt: skip
    print(f"annotate_vs_demo: {rate / demo_rate:.2f}")


if __name__ == "__main__":
    main()
