"""The evaluation report of evaluate_appa_real.py for any CSV in the label schema (README.md)."""

import argparse
from pathlib import Path

from age_gender.errors import exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", type=Path, required=True, help="labels (genders, ages, img_paths)")
    parser.add_argument("--root", type=Path, required=True, help="folder img_paths start from")
    parser.add_argument("--weight_file", type=Path, nargs="*", default=[])
    parser.add_argument("--model", nargs="*", default=[], help="'dlib-models', the reference")
    parser.add_argument(
        "--detect", action="store_true", help="detect faces when the CSV has no boxes"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="faces per model call")
    parser.add_argument("--output_dir", type=Path, default=Path("output/evaluation"))
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender import evaluation, labels
    from age_gender.errors import UserError
    from age_gender.estimator import load_estimator
    from age_gender.faces import FaceDetector

    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    truth = labels.read_labels_csv(args.csv)
    truth = truth.rename(columns={"ages": "true_age", "genders": "true_gender"})
    estimators = [load_estimator(path) for path in args.weight_file]
    estimators += [load_estimator(model_name=name) for name in args.model]
    estimators = estimators or [load_estimator()]
    detector = FaceDetector("hog") if args.detect else None
    summaries = evaluation.evaluate(
        estimators, truth, args.root, args.output_dir, detector, args.batch_size
    )
    print(evaluation.format_table(summaries))
    print(f"reports in {args.output_dir}/")


if __name__ == "__main__":
    main()
