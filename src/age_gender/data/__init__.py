"""Labelled faces: the data sets' readers, the output tables, the tf.data pipeline, the face
cache, composites and the eyes of label CSVs. Imports faces and the top-level modules."""
