"""Age and gender accuracy on APPA-REAL: MAE against apparent and real age, and more (README.md)."""

from age_gender.cli.evaluate_appa_real import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
