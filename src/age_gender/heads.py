"""The model's two heads, named and sized once for the network, the input pipeline, export and
every runtime that reads a model's outputs."""

GENDER, AGE = "pred_gender", "pred_age"
HEADS = (GENDER, AGE)  # the model's outputs, in order
GENDER_CLASSES = 2  # female, male
AGE_CLASSES = 101  # ages 0..100
