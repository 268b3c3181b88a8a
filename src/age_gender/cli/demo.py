"""Age and gender of the faces on a webcam, in a folder of images or in a video (see README.md).

python demo.py                                 webcam 0
python demo.py --image_dir examples            a folder of images
python demo.py --video clip.mp4 --output_dir out
"""

import argparse
import sys
from pathlib import Path

from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options.add_model_options(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image_dir", type=Path, help="annotate the images of this folder")
    source.add_argument("--video", type=Path, help="annotate this video file")
    source.add_argument(
        "--camera", type=number(int, 0, 9999), default=0, help="webcam index (default 0)"
    )
    options.add_detector_options(
        parser, "default 1 for images; 0 for video and webcam, whose faces are near and large"
    )
    parser.add_argument("--output_dir", type=Path, help="write results here instead of showing")
    parser.add_argument(
        "--no-display", dest="display", action="store_false", help="never open a window"
    )
    options.add_overwrite_option(parser, "an earlier run's outputs in --output_dir")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender import jobs  # after parsing: TensorFlow is slow to import
    from age_gender.apps import demo
    from age_gender.files import check_output_folder, make_output_folder

    output_dir = args.output_dir
    if output_dir is None and not (args.display and demo.display_available()):
        output_dir = Path("output")
        print("no display: writing results to output/ (set --output_dir to choose)")
    # Inputs and outputs are checked before the model loads: a mistake there fails fast.
    if output_dir is not None:
        check_output_folder(output_dir)
    if args.image_dir is not None:
        images, names, others = demo.folder_plan(args.image_dir, output_dir, args.overwrite)
        inputs, outputs = [*images, *others], [*names, *demo.PREDICTION_FILES]
    else:
        capture = demo.open_capture(args.video if args.video else args.camera)
        name = args.video.stem if args.video else f"camera{args.camera}"
        inputs, outputs = (
            [args.video] if args.video else [],
            [f"{name}.mp4", *demo.PREDICTION_FILES],
        )
        if output_dir is not None:
            demo.check_utf8(output_dir, "OpenCV cannot write a video into a folder whose name "
                            "is not UTF-8; choose another --output_dir")  # fmt: skip
        demo.check_outputs(inputs, outputs, output_dir, args.overwrite)
    detector = options.make_detector(args, default_upsample=int(args.image_dir is not None))
    estimator = options.load_model(args)
    lock = None
    if output_dir is not None:
        make_output_folder(output_dir)
        # Two runs into one folder would each write a table of only their own images.
        lock = jobs.Lock(output_dir, name=None)  # the folder itself: no file among the outputs
        # Again, now that no other run writes there: one may have finished since the check.
        demo.check_outputs(inputs, outputs, output_dir, args.overwrite)
        if args.image_dir is not None:
            demo.start_unfinished(output_dir)
    print(f"model: {estimator.name}, detector: {args.detector}")
    annotator = demo.Annotator(estimator, detector)
    finished = False
    try:
        if args.image_dir is not None:
            demo.run_images(annotator, images, names, others, output_dir)
        else:
            demo.run_video(annotator, capture, name, output_dir)
        finished = True
    finally:  # the images done so far keep their predictions, whatever stopped the run
        if output_dir is not None and annotator.rows:
            try:
                annotator.write_predictions(output_dir)
            except UserError as error:
                if finished:
                    raise
                print(f"note: {error}", file=sys.stderr)  # what stopped the run comes last
        if output_dir is not None and finished:  # the tables list every copy: no run is owed
            demo.finish_unfinished(output_dir)
        if lock is not None:
            lock.close()
    if output_dir is not None:
        print(f"annotated results and predictions.csv / predictions.json in {output_dir}/")


if __name__ == "__main__":
    main()
