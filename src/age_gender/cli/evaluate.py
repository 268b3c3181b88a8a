"""The evaluation report of evaluate_appa_real.py for any CSV in the label schema (README.md)."""

import argparse

from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, given


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    options.add_labels_options(parser, "genders, ages, img_paths")
    parser.add_argument(
        "--group_by", metavar="COLUMN", type=given(str, "a column of the CSV, e.g. subject"),
        help="also report the MAE per value of this column (e.g. subject, for FG-NET), or "
        "per age_group (decades of true age)",
    )  # fmt: skip
    options.add_evaluation_options(parser, "output/evaluation")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.apps import evaluation
    from age_gender.data import labels

    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    truth = labels.read_labels_csv(args.csv)
    names = {"ages": "true_age", "genders": "true_gender"}  # a group by them keeps their name
    truth = truth.rename(columns=names)
    group_by = names.get(args.group_by, args.group_by)
    detector = options.make_detector(args, default_upsample=1) if args.detect else None
    inputs = (args.csv, args.root, *options.model_files(args))
    evaluation.run(
        options.evaluation_models(args), truth, args.root, args.output_dir, detector,
        args.batch_size, args.overwrite, group_by, inputs,
    )  # fmt: skip


if __name__ == "__main__":
    main()
