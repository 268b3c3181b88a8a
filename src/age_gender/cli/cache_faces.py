"""Crops every labelled face of a CSV once into a face cache, for faster training (README.md).

python cache_faces.py --csv meta/imdb_clean_train.csv --root data/imdb-clean/imdb \
    --output_dir cache model.img_size=224 data.margin=0.4
python train.py data.csv=cache/imdb_clean_train.csv data.root=cache model.img_size=224 ...

The trailing arguments are train.py's overrides (a preset, model.img_size, data.margin,
train.augment.*): the cache is cut for the training they configure, with room for its
augmentation.
"""

import argparse
from pathlib import Path

from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_labels_options(parser, "img_paths, boxes, ...")
    parser.add_argument(
        "--output_dir", type=Path, required=True,
        help="the cache: faces/ and a CSV of the input's name (shared by several CSVs)",
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=number(float, 0.1, 4), default=1.25,
        help="the training crop is cached at this many times img_size (default 1.25)",
    )  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="train.py's configuration overrides, e.g. model.img_size=224 data.margin=0.4",
    )  # fmt: skip
    options.add_workers_option(parser)
    options.add_overwrite_option(parser, "an existing CSV, and cache every face again")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.config import check_ranges, compose_config
    from age_gender.data import face_cache, labels
    from age_gender.faces.crops import CropSpec
    from age_gender.files import (
        atomic_output,
        check_inputs_kept,
        check_output_path,
        output_folder,
    )

    cfg = compose_config(args.overrides)
    check_ranges(cfg)
    augment = cfg.train.augment
    room = (
        face_cache.room(augment.rotation, augment.scale, augment.shift) if augment.enabled else 1.0
    )
    side = round(cfg.model.img_size * args.scale * room)
    if side > face_cache.MAX_SIDE:
        raise UserError(f"each cached face would be {side} px wide (model.img_size x --scale x "
                        f"the room train.augment needs), above {face_cache.MAX_SIDE}: lower "
                        "them")  # fmt: skip
    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    with output_folder(args.output_dir):
        output = args.output_dir / args.csv.name
        check_inputs_kept([output], [args.csv])  # the cache's CSV takes the input's name
        check_output_path(output, args.overwrite)
        frame = labels.read_labels_csv(args.csv)
        margin = cfg.data.margin
        crop = CropSpec(round(cfg.model.img_size * args.scale), margin, aligned=cfg.data.align)
        cached = face_cache.cache_faces(
            frame, args.root, args.output_dir, crop, room, args.workers, args.overwrite
        )
        with atomic_output(output) as temporary:
            cached.to_csv(temporary, index=False)
    print(f"{len(cached)} faces -> {output} (train with data.csv={output} "
          f"data.root={args.output_dir} data.margin={margin} and the same overrides)")  # fmt: skip


if __name__ == "__main__":
    main()
