"""Age and gender of the faces on a webcam, in a folder of images or in a video (see README.md)."""

from age_gender.cli.demo import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
