"""The evaluation report of evaluate_appa_real.py for any CSV in the label schema (README.md)."""

from age_gender.cli.evaluate import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
