"""Trains the two-headed age/gender model; configuration in src/age_gender/conf/ (Hydra)."""

from age_gender.cli.train import check_output_dir, main  # noqa: F401

if __name__ == "__main__":
    main()
