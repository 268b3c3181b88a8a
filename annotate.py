"""Age and gender of every face in a collection of images, as one table (see README.md)."""

from age_gender.cli.annotate import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
