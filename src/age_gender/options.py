"""Command-line options that every script running a model shares: which model, which detector."""

import argparse
from pathlib import Path

from age_gender.errors import UserError, number
from age_gender.faces import DETECTORS, DetectorSpec, FaceDetector

TTA_MODES = ("none", "flip")
MAX_UPSAMPLE = 3  # 4 would search a 640x480 photo at 10240x7680 (236 MB) per pyramid level


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weight_file", type=Path, help="a .keras model from train.py, original .hdf5 weights, "
        "or a model exported to .onnx / .tflite (default: the original project's EfficientNetB3, "
        "downloaded once)",
    )  # fmt: skip
    parser.add_argument(
        "--model", help="a named model: dlib-models (bundled, public domain), original-wrn (the "
        "original's v0.5 WRN-16-8, downloaded once), dex or dex-apparent (DEX's VGG-16 ONNX "
        "files in pretrained_models/dex/)",
    )  # fmt: skip
    parser.add_argument(
        "--margin",
        type=number(float, 0),
        help="crop margin around faces (default: the model's, as it was trained)",
    )
    add_tta_option(parser)


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta", choices=TTA_MODES,
        help="test-time augmentation: flip averages each face with its mirror image, at twice "
        "the model's time (default: the model's own, recorded at export; else none)",
    )  # fmt: skip


def set_tta(estimator, tta: str | None) -> None:
    """Applies `--tta` to a model of this project; refuses it for one that crops itself."""
    if tta is None:
        return
    if not hasattr(estimator, "tta"):
        raise UserError("--tta applies to models of this project, not to dlib-models")
    estimator.tta = tta


def add_detector_options(parser: argparse.ArgumentParser, upsample_help: str) -> None:
    parser.add_argument(
        "--detector", choices=DETECTORS, default=DETECTORS[0],
        help="mtcnn finds faces turned up to 25 degrees and gives the eyes; hog is the "
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


def load_model(args: argparse.Namespace):
    """The estimator the options name, with their margin."""
    from age_gender.estimator import load_estimator

    if args.weight_file is not None and args.model is not None:
        raise UserError("give --weight_file or --model, not both")
    estimator = load_estimator(args.weight_file, args.model)
    if args.margin is not None:
        if not hasattr(estimator, "margin"):
            raise UserError("--margin applies to models of this project, not to dlib-models")
        estimator.margin = args.margin
    set_tta(estimator, args.tta)
    return estimator


def detector_spec(args: argparse.Namespace, default_upsample: int) -> DetectorSpec:
    upsample = args.upsample if args.upsample is not None else default_upsample
    return DetectorSpec(args.detector, upsample, args.min_face)


def make_detector(args: argparse.Namespace, default_upsample: int) -> FaceDetector:
    return detector_spec(args, default_upsample).build()
