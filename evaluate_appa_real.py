"""Age and gender accuracy on APPA-REAL: MAE against apparent and real age, and more (README.md)."""

import argparse
from pathlib import Path

from age_gender.errors import UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--weight_file", type=Path, nargs="*", default=[],
        help="models to evaluate side by side (default: the demo's model)",
    )  # fmt: skip
    parser.add_argument("--model", nargs="*", default=[], help="'dlib-models', the reference")
    parser.add_argument("--appa_dir", type=Path, default=Path("data/appa-real-release"))
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument(
        "--detect", action="store_true",
        help="detect faces (with the model's margin) on the full images, not the aligned crops",
    )  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=32, help="faces per model call")
    parser.add_argument("--output_dir", type=Path, default=Path("output/appa_real"))
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender import evaluation, labels
    from age_gender.estimator import load_estimator
    from age_gender.faces import FaceDetector

    if not args.appa_dir.is_dir():
        raise UserError(f"{args.appa_dir} not found; run ./download.sh --appa, or pass --appa_dir")
    truth = labels.read_appa_real(args.appa_dir, args.split).rows
    truth = truth.rename(columns={"real_age": "true_age", "genders": "true_gender"})
    if args.detect:
        truth["img_paths"] = truth["img_paths"].str.removesuffix("_face.jpg")
    estimators = [load_estimator(path) for path in args.weight_file]
    estimators += [load_estimator(model_name=name) for name in args.model]
    estimators = estimators or [load_estimator()]
    detector = FaceDetector("hog") if args.detect else None
    summaries = evaluation.evaluate(
        estimators, truth, args.appa_dir, args.output_dir, detector, args.batch_size
    )
    print(f"APPA-REAL {args.split}{', detected faces' if args.detect else ''}")
    print(evaluation.format_table(summaries))
    print(f"reports in {args.output_dir}/")


if __name__ == "__main__":
    main()
