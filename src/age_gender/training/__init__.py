"""Training: the fit loop, its checkpoints, and several workers. Imports estimators,
models, data, faces and the top-level modules."""
