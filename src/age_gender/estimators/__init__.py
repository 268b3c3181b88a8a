"""Estimators: a model that gives age and gender for the faces of an image, behind one
interface (`base.Estimator`), one module per backend (Keras, ONNX, TFLite, DEX, dlib-models),
and the named models (`presets`). Imports models, faces and the top-level modules."""
