"""A REST API and a web page for age and gender estimation (see README.md)."""

from age_gender.cli.serve import check_tls, main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
