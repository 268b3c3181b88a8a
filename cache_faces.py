"""Crops every labelled face of a CSV once into a face cache, for faster training (README.md)."""

from age_gender.cli.cache_faces import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
