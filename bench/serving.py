"""Exported models and the server on this machine: ONNX Runtime against the compiled Keras call,
the demo's frame time with the ONNX model, and serve.py's latency over HTTP.

EfficientNetB3 at 224 with random weights (they do not change the timing), exported to ONNX by
export.py's own code (parity checked). The server runs that ONNX model in its own process with the
webcam demo's detector settings (HOG, no upsampling), and clients post one 640x480 JPEG with one
face: p50 / p95 latency for 1 client and for 8 concurrent clients, faces/s at saturation. Goals
on 2 cores: onnx_vs_keras_face >= 2.0, demo frame with ONNX <= 50 ms, serve_overhead <= 1.15
(the server's p50 for 1 client over the demo's in-process time for the same frame and model).
"""

import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import keras
import numpy as np
from inference import best_ms, frame_with_one_face  # bench/inference.py: the same frame and timer

from age_gender.apps import export
from age_gender.apps.demo import Annotator
from age_gender.estimators.keras_model import KerasEstimator
from age_gender.estimators.onnx_model import OnnxEstimator
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DetectorSpec
from age_gender.models import model

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.server_process import running_server  # noqa: E402


def latencies(url: str, image: bytes, clients: int, requests: int) -> tuple[list[float], float]:
    """Each request's latency (ms) from `clients` concurrent clients, and faces per second."""

    def client(_) -> list[tuple[float, int]]:
        done = []
        with httpx.Client(timeout=120) as session:
            for _ in range(requests):
                start = time.perf_counter()
                answer = session.post(f"{url}/v1/predict", files={"image": ("f.jpg", image)})
                answer.raise_for_status()
                done.append((1000 * (time.perf_counter() - start), len(answer.json()["faces"])))
        return done

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [one for done in pool.map(client, range(clients)) for one in done]
    elapsed = time.perf_counter() - start
    return [ms for ms, _ in results], sum(faces for _, faces in results) / elapsed


def main() -> None:
    print(f"{os.cpu_count()} cores")
    keras.utils.set_random_seed(0)
    keras_estimator = KerasEstimator(
        model.build_model("EfficientNetB3", CropSpec(224), None), "random"
    )
    folder = Path(tempfile.mkdtemp())
    onnx_path = folder / "EfficientNetB3_224.onnx"
    export.export(keras_estimator, "onnx", onnx_path)
    onnx_estimator = OnnxEstimator.load(onnx_path)

    crop = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    keras_ms = best_ms(lambda: keras_estimator.predict_crops(crop), 30)
    onnx_ms = best_ms(lambda: onnx_estimator.predict_crops(crop), 30)
    onnx_vs_keras = keras_ms / onnx_ms
    print(f"EfficientNetB3 224, batch 1, per face: Keras compiled call {keras_ms:.1f} ms, ONNX "
          f"Runtime {onnx_ms:.1f} ms: ONNX {onnx_vs_keras:.2f}x faster (goal 2.0)")  # fmt: skip

    frame = frame_with_one_face()
    detector = DetectorSpec("hog", upsample=0).build()
    annotator = Annotator(onnx_estimator, detector)
    demo_ms = best_ms(lambda: annotator.annotate(frame, "bench"))
    print(f"demo frame (640x480, one face, HOG upsample 0) with the ONNX model: {demo_ms:.1f} ms "
          "(goal 50)")  # fmt: skip

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    image = jpeg.tobytes()
    with running_server("--weight_file", onnx_path, "--upsample", "0") as url:
        latencies(url, image, 1, 5)  # warm the connection path
        single, _ = latencies(url, image, 1, 60)
        concurrent_8, faces_per_s = latencies(url, image, 8, 20)
    p50, p95 = np.percentile(single, [50, 95])
    p50_8, p95_8 = np.percentile(concurrent_8, [50, 95])
    print(f"server, 1 client: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"server, 8 concurrent clients: p50 {p50_8:.1f} ms, p95 {p95_8:.1f} ms, "
          f"{faces_per_s:.1f} faces/s at saturation")  # fmt: skip
    print(f"onnx_vs_keras_face: {onnx_vs_keras:.2f}")
    print(f"serve_overhead: {p50 / demo_ms:.2f}")


if __name__ == "__main__":
    main()
