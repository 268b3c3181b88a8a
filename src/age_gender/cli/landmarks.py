"""Finds the eyes of every face of a label CSV, for training with data.align=true (README.md).

python landmarks.py --csv meta/imdb.csv --root data/imdb_crop     -> meta/imdb_eyes.csv
"""

import argparse
from pathlib import Path

from age_gender.cli import options
from age_gender.cli.options import add_detector_options, detector_spec
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_labels_options(parser, "img_paths, ...")
    parser.add_argument("--output", type=Path, help="default: <csv>_eyes.csv beside it")
    options.add_workers_option(parser)
    parser.add_argument("--chunk_size", type=number(int, 1), default=1000, help="rows per part")
    add_detector_options(parser, "default 1")
    options.add_overwrite_option(parser)
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.data import label_eyes, labels
    from age_gender.files import check_inputs_kept, check_output_path

    output = args.output or args.csv.with_name(f"{args.csv.stem}_eyes.csv")
    check_output_path(output, args.overwrite)
    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    frame = labels.read_labels_csv(args.csv)
    check_inputs_kept([output], [args.csv])
    detector = detector_spec(args, 1)
    detector.build()  # a detector that cannot load fails here, in one line, before any worker
    result = label_eyes.add_eyes(
        frame, args.root, output, args.workers, args.chunk_size, detector,
        args.overwrite,
    )  # fmt: skip
    found = sum(eyes is not None for eyes in labels.row_eyes(result))
    print(f"eyes found for {found} of {len(result)} faces -> {output}")


if __name__ == "__main__":
    main()
