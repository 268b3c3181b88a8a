"""Turns a downloaded data set into label CSVs in the project's one schema (see README.md)."""

from age_gender.cli.create_db import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
