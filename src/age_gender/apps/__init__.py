"""What users run: the Python API, demo, annotation, evaluation, the REST server and its
web page, export. Imports estimators, models, data, faces and the top-level modules."""
