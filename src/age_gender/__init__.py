"""Age and gender estimation from faces."""
