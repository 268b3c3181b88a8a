"""Pastes every face crop of a CSV into photo backgrounds and finds it there with the model's
detector, once, for training on faces as a detector hands them over (docs/training.md)."""

from age_gender.cli.composite_faces import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
