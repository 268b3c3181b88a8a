"""Pastes every face crop of a CSV into photo backgrounds and finds it there with the model's
detector, once, so training sees faces as a detector hands them over (docs/training.md).

python composite_faces.py --csv meta/utkface_train.csv --root data/UTKFace \
    --backgrounds examples/backgrounds --output_dir data/utkface_composites
python train.py +experiment=utkface_cpu   # data.csv=<output_dir>/<csv>, data.root=<output_dir>

A face the detector does not find in its composite is kept as its crop. A second run resumes.
"""

import argparse
import shlex
from pathlib import Path

from age_gender.cli import options
from age_gender.errors import ArgumentParser, exit_on_user_error, number

FRAMING_SAMPLE = 300  # crops the detector's box in them is measured on


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_labels_options(parser, "img_paths of face crops, ages, genders, ...")
    parser.add_argument(
        "--backgrounds", type=Path, required=True, help="a folder of photos without faces"
    )
    parser.add_argument(
        "--output_dir", type=Path, required=True,
        help="the composites: composites/ and a CSV of the input's name",
    )  # fmt: skip
    parser.add_argument(
        "--max_angle", type=number(float, 0, 90), default=25.0,
        help="faces are turned by up to this many degrees either way (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--with_crops",
        action="store_true",
        help="also keep each face's crop as it is (a row of its own): the model learns both",
    )
    parser.add_argument(
        "--seed", type=number(int, 0, 2**32 - 1), default=0,
        help="the same seed, the same composites (default 0)",
    )  # fmt: skip
    options.add_detector_options(parser, "default 1: faces from 32 px, as annotate.py")
    options.add_workers_option(parser)
    options.add_overwrite_option(parser, "an existing CSV (composites made before are kept)")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender.data import composites, labels
    from age_gender.errors import UserError
    from age_gender.faces import framing
    from age_gender.files import check_inputs_kept, check_output_path, output_folder

    if not args.root.is_dir():
        raise UserError(f"image folder {args.root} does not exist")
    backgrounds = composites.backgrounds_in(args.backgrounds)
    with output_folder(args.output_dir):
        output = args.output_dir / args.csv.name
        check_inputs_kept([output], [args.csv])
        check_output_path(output, args.overwrite)
        frame = labels.read_labels_csv(args.csv)
        # The pasted face's true box sits where the detector boxes these crops: measured.
        sample = min(FRAMING_SAMPLE, len(frame))
        measured = framing.framing_of_crops(frame, args.root, sample, args.seed)
        framed = {} if measured is None else {"margin": measured.margin, "offset": measured.offset}
        if measured is None:
            print(f"warning: the detector finds too few faces in {sample} of these crops to "
                  "measure their framing; faces are pasted as if framed like UTKFace's "
                  f"(margin {composites.PasteSettings().margin})")  # fmt: skip
        settings = composites.PasteSettings(max_angle=args.max_angle, **framed)
        rows = composites.make_composites(
            frame, args.root, args.output_dir, backgrounds,
            options.detector_spec(args, default_upsample=1), args.workers, args.seed, settings,
            args.with_crops,
        )  # fmt: skip
        composites.write_rows(rows, output)
    print(f"{len(rows)} faces -> {output} (train with data.csv={shlex.quote(str(output))} "
          f"data.root={shlex.quote(str(args.output_dir))} data.margin={settings.margin:.3f} "
          "data.upright=true)")  # fmt: skip


if __name__ == "__main__":
    main()
