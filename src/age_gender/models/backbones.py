"""The backbone registry: each family of networks is one entry saying which names it holds, how
to build one, its preprocessing, the weights it accepts, the smallest input it takes and whether
the heads on it have a bias. `model.build_model` and training ask it; adding a family is one
entry here and no branch elsewhere.
"""

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable

import keras

from age_gender.errors import UserError
from age_gender.models import dlib_resnet, wide_resnet

IMAGENET = "imagenet"


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of backbones. `holds` says whether a name is one of it; `constructor` gives the
    name's keras.applications-like constructor (include_top, weights, input_tensor,
    input_shape, pooling); `preprocess` the function from raw 0..255 RGB to its input;
    `weights` the words `model.weights` may be, and `accepts_file` whether a weight file is
    one; `check_size` refuses an input too small for it; `head_bias`: the original's wide ResNet
    has heads without bias, so its published weights load only into the same."""

    name: str
    holds: Callable[[str], bool]
    constructor: Callable[[str], Callable]
    preprocess: Callable[[str], Callable]
    weights: tuple[str | None, ...] = (None,)
    accepts_file: bool = True
    check_size: Callable[[str, int], None] = lambda name, size: None
    head_bias: bool = True


@functools.cache
def application_names() -> tuple[str, ...]:
    """Every image model constructor in keras.applications."""
    return tuple(sorted(name for name, value in vars(keras.applications).items()
                        if inspect.isfunction(value) and name[0].isupper()))  # fmt: skip


def application_preprocess(name: str) -> Callable:
    """The keras.applications module's own `preprocess_input` (identity for those that
    rescale inside)."""
    return importlib.import_module(getattr(keras.applications, name).__module__).preprocess_input


FAMILIES = (
    Family(
        "wide ResNets (WideResNet<depth>_<width>, e.g. WideResNet16_8, the original's)",
        holds=lambda name: wide_resnet.parse_name(name) is not None,
        constructor=lambda name: functools.partial(
            wide_resnet.wide_resnet, *wide_resnet.parse_name(name)
        ),
        preprocess=lambda name: lambda images: images,  # the original fed raw 0..255 pixels
        head_bias=False,
    ),
    Family(
        f"the face networks ({', '.join(dlib_resnet.ARCHITECTURES)})",
        holds=lambda name: name in dlib_resnet.ARCHITECTURES,
        constructor=lambda name: functools.partial(dlib_resnet.dlib_resnet, name),
        preprocess=lambda name: dlib_resnet.preprocess_input,
        weights=(None, dlib_resnet.PACKAGED),
        accepts_file=False,  # their weights are read from the packages that ship them
        check_size=dlib_resnet.check_size,
    ),
    Family(
        "keras.applications",
        holds=lambda name: name in application_names(),
        constructor=lambda name: getattr(keras.applications, name),
        preprocess=application_preprocess,
        weights=(None, IMAGENET),
    ),
)


def family(model_name: str) -> Family:
    """The family `model_name` belongs to, or one line naming the names there are."""
    for candidate in FAMILIES:
        if candidate.holds(model_name):
            return candidate
    others = "; ".join(entry.name for entry in FAMILIES if entry.name != "keras.applications")
    raise UserError(f"unknown backbone {model_name!r}; keras.applications has: "
                    f"{', '.join(application_names())}; also built in: {others}")  # fmt: skip


def check_weights(model_name: str, weights: str | None, is_file: bool) -> None:
    """Refuses `model.weights` the backbone's family does not take (a file it takes is tried by
    the constructor)."""
    chosen = family(model_name)
    if (weights not in chosen.weights) and not (is_file and chosen.accepts_file):
        words = " or ".join("null" if word is None else word for word in chosen.weights)
        raise UserError(f"model.weights={weights}: {model_name} takes {words}"
                        f"{' or a weight file' if chosen.accepts_file else ''}")  # fmt: skip
