"""The command-line entry points: the age-gender-* commands and the scripts of a checkout."""
