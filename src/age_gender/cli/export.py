"""Exports a model (a .keras file of train.py, or original HDF5 weights) to ONNX, TFLite or a
TensorFlow SavedModel.

python export.py --weight_file checkpoint/EfficientNetB3_224/best.keras --format all
"""

import argparse
import importlib
from pathlib import Path

from age_gender.cli.options import add_overwrite_option, add_tta_option
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error

NEEDS = {
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "tflite": ("ai_edge_litert",),
    "saved_model": (),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weight_file", type=Path, required=True, help="the model to export")
    parser.add_argument(
        "--format", choices=(*NEEDS, "all"), default="onnx", help="all: every format"
    )
    parser.add_argument("--output_dir", type=Path, default=Path("exported"))
    add_overwrite_option(parser, "an earlier export of the same model")
    add_tta_option(parser)
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    forms = list(NEEDS) if args.format == "all" else [args.format]
    for module in (module for form in forms for module in NEEDS[form]):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UserError(f"export needs {module}: pip install 'age-gender[export]'") from error
    from age_gender import export  # after parsing: TensorFlow is slow to import
    from age_gender.estimators.keras_model import KerasEstimator
    from age_gender.files import make_output_folder

    if args.weight_file.suffix.lower() in (".onnx", ".tflite"):
        raise UserError(
            f"{args.weight_file} is an exported model already; export takes a .keras file from "
            "train.py or the original's .hdf5 weights"
        )
    folder = make_output_folder(args.output_dir)  # before the model loads: fails fast
    paths = {form: folder / f"{args.weight_file.stem}{export.SUFFIXES[form]}" for form in forms}
    for path in paths.values():
        if path.exists() and not args.overwrite:
            raise UserError(f"{path} exists from an earlier export; pass --overwrite to replace it")
    estimator = KerasEstimator.load(args.weight_file)
    estimator.set_options(tta=args.tta)
    for form, path in paths.items():
        export.export(estimator, form, path)
        print(f"exported {path}")


if __name__ == "__main__":
    main()
