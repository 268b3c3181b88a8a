"""Crops every labelled face of a CSV once into a face cache, for faster training (README.md).

python cache_faces.py --csv meta/imdb_clean_train.csv --root data/imdb-clean/imdb --output_dir cache
python train.py data.csv=cache/imdb_clean_train.csv data.root=cache ...
"""

import argparse
import os
from pathlib import Path

from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--csv", type=Path, required=True, help="labels (img_paths, boxes, ...)")
    parser.add_argument("--root", type=Path, required=True, help="folder img_paths start from")
    parser.add_argument(
        "--output_dir", type=Path, required=True,
        help="the cache: faces/ and a CSV of the input's name (shared by several CSVs)",
    )  # fmt: skip
    parser.add_argument(
        "--img_size", type=number(int, 8, 2048), default=224, help="model.img_size (8-2048)"
    )
    parser.add_argument(
        "--scale", type=number(float, 0.1, 4), default=1.25,
        help="the training crop is cached at this many times img_size (default 1.25)",
    )  # fmt: skip
    parser.add_argument("--margin", type=number(float, 0), default=0.4, help="data.margin")
    parser.add_argument("--rotation", type=number(float, 0, 180), default=20.0,
                        help="train.augment.rotation, degrees")  # fmt: skip
    parser.add_argument("--zoom", type=number(float, 0), default=0.2,
                        help="train.augment.scale")  # fmt: skip
    parser.add_argument("--shift", type=number(float, 0, 1), default=0.03,
                        help="train.augment.shift")  # fmt: skip
    parser.add_argument(
        "--workers", type=number(int, 1), default=os.cpu_count(), help="processes (the cores)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender import face_cache, labels
    from age_gender.files import (
        atomic_output,
        check_inputs_kept,
        check_output_path,
        make_output_folder,
    )

    if args.zoom >= 1:
        raise UserError(f"--zoom must be below 1, not {args.zoom}")
    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    make_output_folder(args.output_dir)
    output = args.output_dir / args.csv.name
    check_inputs_kept([output], [args.csv])  # the cache's CSV takes the input's name
    check_output_path(output, args.overwrite)
    frame = labels.read_labels_csv(args.csv)
    room = face_cache.room(args.rotation, args.zoom, args.shift)
    cached = face_cache.cache_faces(
        frame, args.root, args.output_dir, round(args.img_size * args.scale), args.margin, room,
        args.workers,
    )  # fmt: skip
    with atomic_output(output) as temporary:
        cached.to_csv(temporary, index=False)
    print(f"{len(cached)} faces -> {output} (train with data.csv={output} "
          f"data.root={args.output_dir} data.margin={args.margin})")  # fmt: skip


if __name__ == "__main__":
    main()
