"""Exports a model (a .keras file of train.py, or original HDF5 weights) to ONNX, TFLite or a
TensorFlow SavedModel."""

from age_gender.cli.export import main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
