"""Turns a downloaded data set into label CSVs in the project's one schema (see README.md)."""

import argparse
from pathlib import Path

from age_gender.cli import options
from age_gender.data import labels
from age_gender.errors import ArgumentParser, UserError, exit_on_user_error, number
from age_gender.files import atomic_output, check_output_path, make_output_folder

DATABASES = ("imdb", "wiki", "utkface", "imdb_clean", "appa_real", "fgnet")
DEFAULT_DATA_DIRS = {
    "imdb": "data/imdb_crop",
    "wiki": "data/wiki_crop",
    "utkface": "data/UTKFace",
    "imdb_clean": "data/imdb-clean/csvs",
    "appa_real": "data/appa-real-release",
    "fgnet": "data/FGNET/images",
}
SPLITS = {"imdb_clean": labels.IMDB_CLEAN_SPLITS, "appa_real": labels.APPA_REAL_SPLITS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=DATABASES, default="imdb", help="data set to read")
    parser.add_argument(
        "--data_dir", type=Path, help="where the data set lies (default: data/<its usual folder>)"
    )
    parser.add_argument(
        "--min_score",
        type=number(float),
        default=1.0,
        help="IMDB-WIKI: minimum face score (default 1.0)",
    )
    parser.add_argument(
        "--imdb_clean_variant",
        choices=("full", "1024"),
        default="full",
        help="IMDB-Clean: boxes for the full IMDB images (imdb_*_new.csv) or the 1024 px crops",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="CSV to write (default meta/<db>.csv); split data sets write <name>_<split>.csv",
    )
    parser.add_argument(
        "--val_fraction",
        type=number(float),
        default=0.0,
        help="data sets without splits: hold out this share for validation, chosen by a hash of "
        "each file name, as <name>_train.csv and <name>_val.csv (default 0: one CSV)",
    )
    options.add_overwrite_option(parser, "existing outputs")
    return parser.parse_args(argv)


def split_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The splits written: the data set's own, train and val when held out by hash, else ''."""
    if args.db in SPLITS:
        return SPLITS[args.db]
    return ("train", "val") if args.val_fraction else ("",)


def read_tables(args: argparse.Namespace, data_dir: Path) -> dict[str, labels.LabelTable]:
    """Reads the data set; the keys are the splits ('' for a data set without splits)."""
    if args.db in ("imdb", "wiki"):
        mat_path = data_dir / f"{args.db}.mat"
        return {"": labels.read_imdb_wiki(mat_path, args.db, args.min_score)}
    if args.db == "utkface":
        return {"": labels.read_utkface(data_dir)}
    if args.db == "fgnet":
        return {"": labels.read_fgnet(data_dir)}
    if args.db == "imdb_clean":
        suffix = "_1024" if args.imdb_clean_variant == "1024" else ""
        return {
            split: labels.read_imdb_clean(data_dir / f"imdb_{split}_new{suffix}.csv")
            for split in SPLITS["imdb_clean"]
        }
    return {split: labels.read_appa_real(data_dir, split) for split in SPLITS["appa_real"]}


def output_path(output: Path, split: str) -> Path:
    return output.with_name(f"{output.stem}_{split}{output.suffix}") if split else output


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_dir = args.data_dir or Path(DEFAULT_DATA_DIRS[args.db])
    if not 0 <= args.val_fraction < 1:
        raise UserError(f"--val_fraction must be in [0, 1), not {args.val_fraction}")
    output = args.output
    if output is None:
        output = make_output_folder(Path("meta")) / f"{args.db}.csv"
    if args.val_fraction and args.db in SPLITS:
        raise UserError(f"--db {args.db} has its own splits; leave out --val_fraction")
    for split in split_names(args):
        check_output_path(output_path(output, split), args.overwrite)

    tables = read_tables(args, data_dir)
    if args.val_fraction:
        tables = labels.hash_split(tables[""], args.val_fraction)
    empty = [split for split, table in tables.items() if table.rows.empty]
    if empty:
        raise UserError(f"--val_fraction {args.val_fraction} leaves no {empty[0]} rows; choose "
                        "a share that leaves both sides some")  # fmt: skip
    for split, table in tables.items():
        path = output_path(output, split)
        total = len(table.rows) + sum(table.dropped.values())
        print(f"{args.db}{' ' + split if split else ''}: {total} rows read")
        for rule, count in table.dropped.items():
            print(f"  dropped {count:>8} ({rule})")
        with atomic_output(path) as temporary:
            table.rows.to_csv(temporary, index=False)
        print(f"  kept    {len(table.rows):>8} -> {path}")


if __name__ == "__main__":
    main()
