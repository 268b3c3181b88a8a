"""Age and gender of every face in a collection of images, as one table (see README.md).

python annotate.py photos/ --output faces.parquet            a folder, recursively
python annotate.py 'photos/**/*.jpg' --output faces.csv      a glob
python annotate.py meta/imdb.csv --root data/imdb_crop --output imdb_faces.jsonl
python annotate.py photos/ --output faces.parquet --engine ray --ray_address auto

One row per face (box, detector score, age, gender), and one row for each image without a face
or that cannot be read, saying so. A killed run started again with the same arguments goes on
where it stopped.
"""

import argparse
import dataclasses
from pathlib import Path

from age_gender import schema
from age_gender.cli import options
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number, printable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="a folder, a glob pattern, or a CSV with img_paths")
    parser.add_argument("--root", type=Path, help="the folder a CSV's img_paths start from")
    parser.add_argument(
        "--output", type=Path, required=True, help="the table: .parquet, .csv or .jsonl"
    )
    options.add_overwrite_option(parser)
    options.add_model_options(parser)
    options.add_detector_options(parser, "default 1, as the demo does for images")
    options.add_workers_option(parser, "processes that decode and detect")
    parser.add_argument(
        "--batch_size",
        type=number(int, 1),
        default=4,
        help="faces per model call (default 4, the fastest on a 2-core CPU; 64 or more on a GPU)",
    )
    parser.add_argument(
        "--part_size", type=number(int, 1), default=256,
        help="images per part: a killed run loses at most the parts in progress",
    )  # fmt: skip
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument(
        "--ray_address", help="a Ray cluster to join ('auto', 'ray://head:10001'); default: "
        "a Ray instance on this machine",
    )  # fmt: skip
    parser.add_argument(
        "--num_gpus_per_worker", type=number(float, 0), default=0.0,
        help="GPUs for each Ray actor that runs the model (0: CPU)",
    )  # fmt: skip
    return parser.parse_args(argv)


def check_output(output: Path, overwrite: bool, engine: str) -> None:
    """Fails before any work: an unknown format, a missing folder, a result not to replace."""
    from age_gender.data.records import table_format
    from age_gender.files import check_output_path

    if table_format(output) != ".parquet" and engine == "ray":
        raise UserError("--engine ray writes Parquet: name the output .parquet")
    if engine == "ray" and output.is_dir():  # the dataset folder of an earlier Ray run
        if not overwrite:
            raise UserError(f"{output} exists; pass --overwrite to replace it")
        return
    check_output_path(output, overwrite)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from age_gender import jobs
    from age_gender.apps import annotation
    from age_gender.files import check_inputs_kept

    check_output(args.output, args.overwrite, args.engine)
    if args.engine == "ray":
        from age_gender.apps import annotation_ray

        annotation_ray.import_ray()  # before the model loads: a missing extra fails fast
    root, names = annotation.list_images(args.input, args.root)
    inputs = [root / name for name in names]
    if Path(args.input).is_file():  # a CSV of img_paths is an input too
        inputs.append(Path(args.input))
    check_inputs_kept([args.output], inputs)
    detector = options.detector_spec(args, default_upsample=1)
    detector.build()  # a detector that cannot be made (a missing extra) fails before the model
    estimator = options.load_model(args)
    finding = annotation.FaceFinding(detector, estimator.crop_spec)
    print(f"{len(names)} images; model: {estimator.name}, detector: {args.detector}")
    if args.engine == "ray":
        annotation_ray.annotate(
            names, root, args.output, finding, args.weight_file, args.model, args.batch_size,
            args.num_gpus_per_worker, args.ray_address, args.tta,
        )  # fmt: skip
        print(f"-> {args.output}/ (a Parquet dataset)")
        return
    settings = {
        "input": args.input, "--root": str(root.resolve()), "model": estimator.name,
        "--detector": detector.kind, "--upsample": detector.upsample,
        "--min_face": detector.min_face, "detector limits": [detector.min_score, detector.max_side],
        "the model's crop": finding.crop and dataclasses.asdict(finding.crop),
        "--part_size": args.part_size,
        "--tta": estimator.tta,
    }  # fmt: skip
    parts = jobs.Parts(args.output, settings, args.overwrite)
    table = annotation.annotate(
        names, root, args.output, estimator, finding, parts, args.workers, args.batch_size,
        args.part_size,
    )  # fmt: skip
    counts = table.drop_duplicates("file")["status"].value_counts()
    print(
        f"{len(names)} images: {int(table['face'].notna().sum())} faces, "
        f"{counts.get(schema.NO_FACE, 0)} without a face, "
        f"{counts.get(schema.UNREADABLE, 0)} unreadable -> {args.output}"
    )
    if counts.get(schema.UNREADABLE, 0) == len(names):
        raise UserError(
            f"none of the {len(names)} images could be read (e.g. {printable(str(names[0]))}); "
            f"check the input and --root ({args.output} lists each as unreadable)"
        )


if __name__ == "__main__":
    main()
