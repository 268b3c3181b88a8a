"""Wide residual networks (Zagoruyko & Komodakis, 2016) as a backbone beside keras.applications.

`WideResNet16_8` is the network the original project first shipped (release v0.5, 64 px). The
layers are made in the order of the original's `wide_resnet.py`, so its HDF5 weights, which old
Keras saved and loads by layer order, load here; like the original, the features are the last
block's 8 x 8 average (stride 1, same padding) flattened, and the heads have no bias.
"""

import re

import h5py
import keras
import numpy as np

NAME = re.compile(r"^WideResNet(?P<depth>\d+)_(?P<width>\d+)$")


def parse_name(model_name: str) -> tuple[int, int] | None:
    """(depth, width) of a name like `WideResNet16_8`; None for other names."""
    match = NAME.match(model_name)
    return (int(match["depth"]), int(match["width"])) if match else None


def conv(filters: int, kernel: int, strides: int = 1) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal",
    )  # fmt: skip


def batch_norm_relu(tensor):
    return keras.layers.Activation("relu")(keras.layers.BatchNormalization()(tensor))


def wide_basic(tensor, planes_in: int, planes_out: int, strides: int):
    """Pre-activation basic block; a changing width shares the activated input with a 1x1
    shortcut convolution, as in the original."""
    if planes_in != planes_out:
        tensor = batch_norm_relu(tensor)
        branch = tensor
    else:
        branch = batch_norm_relu(tensor)
    branch = conv(planes_out, 3, strides)(branch)
    branch = conv(planes_out, 3)(batch_norm_relu(branch))
    shortcut = conv(planes_out, 1, strides)(tensor) if planes_in != planes_out else tensor
    return keras.layers.Add()([branch, shortcut])


def wide_resnet(
    depth: int,
    width: int,
    include_top: bool = False,
    weights: str | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
) -> keras.Model:
    """The feature extractor, with the keras.applications signature build_model calls (no top,
    no ImageNet weights: a weight file or from scratch)."""
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(f"a wide ResNet's depth is 6n + 4 (10, 16, 22, 28, ...), not {depth}")
    if weights == "imagenet":
        raise ValueError("there are no ImageNet weights for a wide ResNet; use model.weights=null")
    inputs = input_tensor if input_tensor is not None else keras.Input(input_shape)
    blocks = (depth - 4) // 6
    stages = [16, 16 * width, 32 * width, 64 * width]
    tensor = conv(stages[0], 3)(inputs)
    for group, strides in enumerate((1, 2, 2)):
        for block in range(blocks):
            planes_in = stages[group] if block == 0 else stages[group + 1]
            tensor = wide_basic(tensor, planes_in, stages[group + 1], strides if block == 0 else 1)
    tensor = batch_norm_relu(tensor)
    tensor = keras.layers.AveragePooling2D(8, strides=1, padding="same")(tensor)
    features = keras.layers.Flatten()(tensor)
    network = keras.Model(keras.utils.get_source_inputs(inputs), features)
    if weights is not None:
        network.load_weights(weights)
    return network


def describe_hdf5(path) -> tuple[int, int, int] | None:
    """(depth, width, image size) of a wide ResNet in an old-Keras HDF5 weight file, read from its
    layers: the depth is its number of convolutions, the width the first block's channels / 16,
    the size from the gender head's inputs ((size / 4)^2 x 64 x width). None for other files."""
    try:
        with h5py.File(path, "r") as file:
            group = file.get("model_weights", file)  # a whole-model file holds them there
            names = [name.decode() if isinstance(name, bytes) else name
                     for name in group.attrs.get("layer_names", [])]  # fmt: skip
            kernels = [
                group[name][weight].shape
                for name in names
                for weight in group[name].attrs.get("weight_names", [])
                if "kernel" in (weight.decode() if isinstance(weight, bytes) else weight)
            ]
    except (OSError, KeyError):
        return None
    convolutions = [shape for shape in kernels if len(shape) == 4]
    gender = [shape for shape in kernels if len(shape) == 2 and shape[1] == 2]
    if len(convolutions) < 10 or not gender or convolutions[0][-1] != 16:
        return None
    width = convolutions[1][-1] // 16
    size = 4 * np.sqrt(gender[0][0] / (64 * width))
    if not size.is_integer():
        return None
    return len(convolutions), width, int(size)
