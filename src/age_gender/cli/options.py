"""Command-line options the commands share, declared once: which model, which detector, the
labels, the worker processes and whether an output may be replaced."""

import argparse
import os
from pathlib import Path

from age_gender.errors import UserError, given, number, printable
from age_gender.estimators.base import Estimator
from age_gender.estimators.presets import (
    DEFAULT,
    PRESETS,
    load_estimator,
    load_preset,
    models_table,
)
from age_gender.faces.detection import DETECTORS, DetectorSpec, FaceDetector
from age_gender.models import store
from age_gender.models.card import TTA_MODES

MODEL_NAME = "a named model (demo.py --list-models lists them)"  # what --model= lacks

MAX_UPSAMPLE = 3  # 4 would search a 640x480 photo at 10240x7680 (236 MB) per pyramid level


class ListModels(argparse.Action):
    """`--list-models`: the named models, their licences, and exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(models_table())
        parser.exit()


def add_labels_options(parser: argparse.ArgumentParser, columns: str) -> None:
    """`--csv` (a label CSV with `columns`) and `--root` (where its img_paths start)."""
    parser.add_argument("--csv", type=Path, required=True, help=f"labels ({columns})")
    parser.add_argument("--root", type=Path, required=True, help="folder img_paths start from")


def add_workers_option(parser: argparse.ArgumentParser, what: str = "processes") -> None:
    parser.add_argument(
        "--workers", type=number(int, 1), default=os.cpu_count(),
        help=f"{what} (default: the cores)",
    )  # fmt: skip


def add_overwrite_option(parser: argparse.ArgumentParser, what: str = "an existing output") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_model_choice(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """`--weight_file` or `--model` (argparse refuses both), and `--list-models`; `several`:
    any number of each, evaluated side by side."""
    choice = parser if several else parser.add_mutually_exclusive_group()
    many = {"nargs": "+", "action": "extend", "default": []} if several else {}
    default = f"default: the {DEFAULT} model" + ("" if several else ", downloaded once")
    choice.add_argument(
        "--weight_file", type=given(Path, "a model file"), **many,
        help=f"{'models' if several else 'a model'}: a .keras file from train.py, original "
        f".hdf5 weights, or a model exported to .onnx / .tflite ({default})",
    )  # fmt: skip
    choice.add_argument(
        "--model", metavar="NAME", type=given(str, MODEL_NAME), **many,
        help=f"{'named models' if several else 'a named model'}: {', '.join(PRESETS)}, or one "
        "you trained with train.name=NAME (NAME:onnx for its export; --list-models lists them)",
    )  # fmt: skip
    parser.add_argument("--list-models", action=ListModels, help="list the named models and exit")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    add_model_choice(parser)
    parser.add_argument(
        "--margin",
        type=number(float, 0),
        help="crop margin around faces (default: the model's, as it was trained)",
    )
    add_tta_option(parser)


def add_evaluation_options(parser: argparse.ArgumentParser, output_dir: str) -> None:
    """What evaluate.py and evaluate_appa_real.py share: several models side by side, the
    detector for images without a box, and where the reports go."""
    add_model_choice(parser, several=True)
    parser.add_argument(
        "--detect", action="store_true",
        help="detect faces (with the model's margin) in images without a box, instead of "
        "taking the whole image as the face",
    )  # fmt: skip
    add_detector_options(parser, "default 1, as for photos")
    parser.add_argument(
        "--batch_size", type=number(int, 1), default=32, help="faces per model call"
    )
    add_tta_option(parser)
    parser.add_argument("--output_dir", type=Path, default=Path(output_dir))
    add_overwrite_option(parser, "an earlier report in --output_dir")


def named_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The files of the models `add_evaluation_options` named that the user keeps (given files,
    the store's models), each with the name the user gave it."""
    stored = [(name, store.find(name)) for name in args.model if name not in PRESETS]
    given_files = [(str(path), path) for path in args.weight_file]
    return given_files + [(name, path) for name, path in stored if path is not None]


def model_files(args: argparse.Namespace) -> list[Path]:
    """The files of `named_files`: inputs no report may replace."""
    return [path for _, path in named_files(args)]


def check_each_file_once(args: argparse.Namespace) -> None:
    """Refuses one model file given under two names (`m.keras` and `$PWD/m.keras`, a link or a
    hard link to it, a stored model and its file), which would be evaluated twice; the same
    name twice is `check_reports`' refusal."""
    first: dict[object, str] = {}
    for name, path in named_files(args):
        try:
            status = path.stat()
            key: object = (status.st_dev, status.st_ino)  # the file, by any of its names
        except OSError:  # missing, or a link loop: loading it says so
            key = os.path.abspath(path)
        earlier = first.setdefault(key, name)
        if earlier != name:
            raise UserError(f"{printable(name)} is {printable(earlier)} again: each model is "
                            "evaluated once; give it once")  # fmt: skip


def evaluation_models(args: argparse.Namespace) -> list[Estimator]:
    """The models `add_evaluation_options` named (default: the default model), with `--tta`."""
    check_each_file_once(args)
    estimators = [load_estimator(path) for path in args.weight_file]
    estimators += [load_preset(name) for name in args.model]
    estimators = estimators or [load_estimator()]
    for estimator in estimators:
        estimator.set_options(tta=args.tta)
    return estimators


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta", choices=TTA_MODES,
        help="test-time augmentation: flip averages each face with its mirror image, at twice "
        "the model's time (default: the model's own, recorded at export; else none)",
    )  # fmt: skip


def add_detector_options(parser: argparse.ArgumentParser, upsample_help: str) -> None:
    parser.add_argument(
        "--detector", choices=DETECTORS, default=DETECTORS[0],
        help="mtcnn finds faces turned up to about 45 degrees and gives the eyes; hog is the "
        "original's, upright faces only; cnn is dlib's MMOD, slow without a GPU (default mtcnn)",
    )  # fmt: skip
    parser.add_argument(
        "--upsample", type=number(int, 0, MAX_UPSAMPLE),
        help="detector upsampling: each step finds faces half as small (mtcnn: 64 px at 0, "
        "hog: 80 px) at 2x (mtcnn) or 4x (hog) the time, up to "
        f"{MAX_UPSAMPLE} ({upsample_help})",
    )  # fmt: skip
    parser.add_argument(
        "--min_face", type=number(int, 0), default=0, help="ignore faces smaller than this (pixels)"
    )


def load_model(args: argparse.Namespace) -> Estimator:
    """The estimator the options name, with their margin and test-time augmentation."""
    estimator = load_preset(args.model) if args.model else load_estimator(args.weight_file)
    estimator.set_options(args.margin, args.tta)
    return estimator


def detector_spec(args: argparse.Namespace, default_upsample: int) -> DetectorSpec:
    upsample = args.upsample if args.upsample is not None else default_upsample
    return DetectorSpec(args.detector, upsample, args.min_face)


def make_detector(args: argparse.Namespace, default_upsample: int) -> FaceDetector:
    return detector_spec(args, default_upsample).build()
