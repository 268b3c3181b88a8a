"""Exports a model (a .keras file of train.py, or original HDF5 weights) to ONNX (README.md).

python export.py --weight_file checkpoint/EfficientNetB3_224/best.keras
"""

import argparse
from pathlib import Path

from age_gender.errors import ArgumentParser, UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weight_file", type=Path, required=True, help="the model to export")
    parser.add_argument("--format", choices=("onnx",), default="onnx")
    parser.add_argument("--output_dir", type=Path, default=Path("exported"))
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.estimator import KerasEstimator  # after parsing: TensorFlow is slow to import
    from age_gender.export import export_onnx
    from age_gender.files import make_output_folder

    estimator = KerasEstimator.load(args.weight_file)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise UserError(
            f"ONNX export needs {error.name}: pip install 'age-gender[export]'"
        ) from error
    path = make_output_folder(args.output_dir) / f"{args.weight_file.stem}.onnx"
    export_onnx(estimator, path)
    print(f"exported {path}")


if __name__ == "__main__":
    main()
