"""Trains the two-headed age/gender model; its configuration: Hydra, the schema in config.py."""

from age_gender.cli.train import check_output_dir, main  # noqa: F401

if __name__ == "__main__":
    main()
