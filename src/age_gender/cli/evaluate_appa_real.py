"""Age and gender accuracy on APPA-REAL: MAE against apparent and real age, and more (README.md)."""

import argparse
from pathlib import Path

from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--appa_dir", type=Path, default=Path("data/appa-real-release"))
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    options.add_evaluation_options(parser, "output/appa_real")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.apps import evaluation
    from age_gender.data import labels

    if not args.appa_dir.is_dir():
        what = "is a file, not the data set's folder" if args.appa_dir.exists() else "not found"
        raise UserError(f"{args.appa_dir} {what}; run ./download.sh --appa, or pass --appa_dir")
    truth = labels.read_appa_real(args.appa_dir, args.split, "--appa_dir").rows
    truth = truth.rename(columns={"real_age": "true_age", "genders": "true_gender"})
    if args.detect:  # the full images instead of the aligned crops
        truth["img_paths"] = truth["img_paths"].str.removesuffix("_face.jpg")
    print(f"APPA-REAL {args.split}{', detected faces' if args.detect else ''}")
    detector = options.make_detector(args, default_upsample=1) if args.detect else None
    evaluation.run(
        options.evaluation_models(args), truth, args.appa_dir, args.output_dir, detector,
        args.batch_size, args.overwrite, inputs=(args.appa_dir, *options.model_files(args)),
    )  # fmt: skip


if __name__ == "__main__":
    main()
