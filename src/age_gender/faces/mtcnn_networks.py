"""MTCNN's three networks as onnxruntime sessions, built in memory, once per process, from the
weights the `mtcnn` package ships (MIT licence, Iván de Paz Centeno): no network file is
vendored or downloaded, and no TensorFlow runs. The layers are the package's Keras ones
(`mtcnn/network/*.py`), written as the ONNX operators they compute; onnxruntime runs them
three to four times faster than the same networks as TensorFlow graphs on 2 cores.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np

from age_gender.errors import UserError

# Each network: its input side (None: any), the layers of its trunk, and its heads' layers, in
# the order the package's weight lists hold them.
NETWORKS = {
    "pnet": (None, [
        ("conv",), ("prelu",), ("pool", 2, "same"), ("conv",), ("prelu",), ("conv",), ("prelu",),
    ], [[("conv",), ("nhwc",)], [("conv",), ("softmax",), ("nhwc",)]]),
    "rnet": (24, [
        ("conv",), ("prelu",), ("pool", 3, "same"), ("conv",), ("prelu",), ("pool", 3, "valid"),
        ("conv",), ("prelu",), ("flatten",), ("dense",), ("prelu",),
    ], [[("dense",)], [("dense",), ("softmax",)]]),
    "onet": (48, [
        ("conv",), ("prelu",), ("pool", 3, "same"), ("conv",), ("prelu",), ("pool", 3, "valid"),
        ("conv",), ("prelu",), ("pool", 2, "same"), ("conv",), ("prelu",), ("flatten",),
        ("dense",), ("prelu",),
    ], [[("dense",)], [("dense",)], [("dense",), ("softmax",)]]),
}  # fmt: skip


def package_weights(name: str) -> list[np.ndarray]:
    """The `mtcnn` package's weights of one network, read without importing the package (its
    `__init__` imports TensorFlow)."""
    import joblib

    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the MTCNN detector needs the mtcnn package: pip install 'mtcnn>=1.0,<2' "
                        "(or use --detector hog)")  # fmt: skip
    path = Path(spec.submodule_search_locations[0]) / "assets" / "weights" / f"{name}.lz4"
    try:
        return joblib.load(path)
    except Exception as error:  # joblib and lz4 raise many types for a missing or damaged file
        raise UserError(f"MTCNN's weights {path} cannot be read ({type(error).__name__}): "
                        "reinstall mtcnn, or use --detector hog") from error  # fmt: skip


def network(name: str) -> bytes:
    """One network as a serialised ONNX model: NHWC float input `image` (pixels scaled to about
    -1..1), one output per head in the Keras model's layout."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    side, trunk, heads = NETWORKS[name]
    weights = iter(package_weights(name))
    nodes, constants = [], []

    def constant(array: np.ndarray) -> str:
        constants.append(numpy_helper.from_array(array.astype(np.float32), f"w{len(constants)}"))
        return constants[-1].name

    def node(op: str, inputs: list[str], **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [f"t{len(nodes)}"], **attributes))
        return nodes[-1].output[0]

    def layer(tensor: str, kind: str, *options) -> str:
        if kind == "conv":  # Keras' HWIO kernel as ONNX's OIHW
            kernel, bias = next(weights), next(weights)
            return node("Conv", [tensor, constant(kernel.transpose(3, 2, 0, 1)), constant(bias)])
        if kind == "prelu":  # per channel: (1, 1, C) after a convolution, (C,) after a dense
            slope = next(weights)
            return node("PRelu", [tensor, constant(slope.reshape(-1, *[1] * (slope.ndim - 1)))])
        if kind == "pool":  # Keras' "same" pads at the end, as SAME_UPPER
            size, padding = options
            pad = "SAME_UPPER" if padding == "same" else "VALID"
            return node(
                "MaxPool", [tensor], kernel_shape=[size, size], strides=[2, 2], auto_pad=pad
            )
        if kind == "flatten":  # Keras' Permute((2, 1, 3)) of (H, W, C), then Flatten
            return node("Flatten", [node("Transpose", [tensor], perm=[0, 3, 2, 1])])
        if kind == "dense":
            kernel, bias = next(weights), next(weights)
            return node("Gemm", [tensor, constant(kernel), constant(bias)])
        if kind == "softmax":
            return node("Softmax", [tensor], axis=1)
        return node("Transpose", [tensor], perm=[0, 2, 3, 1])  # "nhwc": back to Keras' layout

    tensor = node("Transpose", ["image"], perm=[0, 3, 1, 2])
    for spec in trunk:
        tensor = layer(tensor, *spec)
    outputs = []
    for head in heads:
        out = tensor
        for spec in head:
            out = layer(out, *spec)
        outputs.append(out)
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                    [None, side, side, 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * (4 if side is None else 2))
         for out in outputs],
        constants,
    )  # fmt: skip
    # IR 8 is opset 17's, which every onnxruntime the project allows reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.cache
def sessions() -> tuple:
    """PNet, RNet and ONet as onnxruntime sessions, built once per process."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # One thread: these networks are too small to gain from more (12 ms per 640x480 frame at
    # upsample 0 either way), and the cores are left to the age model and the other workers.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return tuple(
        onnxruntime.InferenceSession(network(name), options, providers=["CPUExecutionProvider"])
        for name in NETWORKS
    )
