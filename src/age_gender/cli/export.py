"""Exports a model (a .keras file of train.py, original HDF5 weights, a model you named with
train.name, or original-b3 / original-wrn) to ONNX, TFLite or a TensorFlow SavedModel.

python export.py --weight_file checkpoint/EfficientNetB3_224/best.keras --format all
python export.py --model mine --format onnx     # beside it in the store: --model mine:onnx
"""

import argparse
import importlib
from pathlib import Path

from age_gender.cli.options import MODEL_NAME, add_overwrite_option, add_tta_option
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, given

NEEDS = {
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "tflite": ("ai_edge_litert",),
    "saved_model": (),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--weight_file", type=given(Path, "a .keras or .hdf5 file"), help="the model to export"
    )
    model.add_argument("--model", metavar="NAME", type=given(str, MODEL_NAME),
                       help="a model you trained with train.name=NAME, or original-b3 / "
                       "original-wrn")  # fmt: skip
    parser.add_argument(
        "--format", choices=(*NEEDS, "all"), default="onnx", help="all: every format"
    )
    parser.add_argument(
        "--output_dir", type=Path,
        help="default: exported/, or beside a named model in the store",
    )  # fmt: skip
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
    from age_gender.apps import export  # after parsing: TensorFlow is slow to import
    from age_gender.estimators import presets
    from age_gender.estimators.base import model_file
    from age_gender.estimators.keras_model import KerasEstimator
    from age_gender.files import check_inputs_kept, make_output_folder
    from age_gender.models import store

    weight_file, output_dir = args.weight_file, args.output_dir or Path("exported")
    if args.model is not None:
        base, form = store.split_name(args.model)
        if form is not None:
            presets.check_keras(base)  # dlib-models:onnx: no --model would do
            raise UserError(f"{args.model} is an export already; export takes the model: "
                            f"--model {base}")  # fmt: skip
        weight_file = presets.named_model_file(args.model)
        if args.model not in presets.PRESETS:  # the store keeps a model's exports beside it
            output_dir = args.output_dir or weight_file.parent
    if not weight_file.exists():  # a name: export cannot take dlib-models under any option
        presets.check_keras(str(weight_file))
    presets.check_not_a_name(weight_file)
    model_file(weight_file)  # before the output folder is made
    if weight_file.suffix.lower() in (".onnx", ".tflite"):
        raise UserError(
            f"{weight_file} is an exported model already; export takes a .keras file from "
            "train.py or the original's .hdf5 weights"
        )
    folder = make_output_folder(output_dir)  # before the model loads: fails fast
    paths = {form: folder / f"{weight_file.stem}{store.EXPORT_SUFFIXES[form]}" for form in forms}
    check_inputs_kept(list(paths.values()), [weight_file])  # --overwrite replaces an export whole
    for form, path in paths.items():
        if path.exists() and path.is_dir() != (form == "saved_model"):  # a SavedModel: a folder
            what = "a file" if form == "saved_model" else "a folder"
            raise UserError(f"{path} is {what}, not an earlier export; move it or choose "
                            "another --output_dir")  # fmt: skip
        if path.exists() and not args.overwrite:
            raise UserError(f"{path} exists from an earlier export; pass --overwrite to replace it")
    estimator = KerasEstimator.load(weight_file)
    estimator.set_options(tta=args.tta)
    for form, path in paths.items():
        export.export(estimator, form, path)
        print(f"exported {path}")


if __name__ == "__main__":
    main()
