"""What a model is: the two-headed network, its backbones (one registry), its card and
calibration, weight files and the store of named models. Imports faces and the top-level
modules."""
