"""Finds the eyes of every face of a label CSV, for training with data.align=true (README.md)."""

from age_gender.cli.landmarks import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
