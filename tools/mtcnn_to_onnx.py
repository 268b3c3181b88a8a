"""Converts the `mtcnn` package's three networks (MIT, Iván de Paz Centeno) to the ONNX files in
src/age_gender/models/mtcnn/, which the MTCNN detector runs with onnxruntime: three to four
times faster than the same networks as TensorFlow graphs on 2 cores (bench/detection.py), and
no TensorFlow in a process that runs an exported model.

A maintainer's step, run once per new release of the package's weights:
pip install 'mtcnn>=1.0,<2' 'tf2onnx>=1.17,<2' && python tools/mtcnn_to_onnx.py
"""

from pathlib import Path

import tensorflow as tf
import tf2onnx
from mtcnn.network.onet import ONet
from mtcnn.network.pnet import PNet
from mtcnn.network.rnet import RNet
from mtcnn.utils.tensorflow import load_weights

FOLDER = Path(__file__).resolve().parents[1] / "src" / "age_gender" / "models" / "mtcnn"
NETWORKS = {  # name: network, input (PNet takes any size: it scores every 12x12 window)
    "pnet": (PNet, (None, None, None, 3)),
    "rnet": (RNet, (None, 24, 24, 3)),
    "onet": (ONet, (None, 48, 48, 3)),
}


def main() -> None:
    for name, (network_class, shape) in NETWORKS.items():
        network = network_class()
        network.build()
        network.set_weights(load_weights(f"{name}.lz4"))
        signature = [tf.TensorSpec(shape, tf.float32, name="image")]
        function = tf.function(lambda images, net=network: net(images), input_signature=signature)
        path = FOLDER / f"{name}.onnx"
        tf2onnx.convert.from_function(function, signature, opset=17, output_path=str(path))
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
