"""The two-headed age/gender model on any keras.applications backbone, its losses and metrics.

A model takes raw 0..255 RGB images: the backbone's own preprocessing (and, for weights trained on
BGR, the channel swap) runs inside it, in the `FaceInput` layer, which also carries the model's
card (`card.ModelCard`). A saved `.keras` file therefore describes itself and nothing outside
needs to know which backbone it holds.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
from keras import ops

from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.models import backbones
from age_gender.models.card import ModelCard
from age_gender.schema import AGE, AGE_CLASSES, GENDER, GENDER_CLASSES

FACE_INPUT = "face_input"
FEATURE_NORM = "feature_norm"  # trains with the heads


@keras.saving.register_keras_serializable(package="age_gender")
class FaceInput(keras.layers.Layer):
    """Raw RGB 0..255 in, the backbone's expected input out; carries the model's card, so a
    saved `.keras` file describes itself.

    `card` is the card's dict; its `img_size` is the input's, set when the layer is built. The
    keyword arguments of files saved before the card (backbone, channel_order, margin, aligned,
    offset, age_std_scale) are read as a card of version 1.
    """

    def __init__(self, card: dict | None = None, **kwargs):
        known = {field.name for field in dataclasses.fields(ModelCard)}
        fields = dict(card or {}, **{name: kwargs.pop(name) for name in list(kwargs)
                                     if name in known})  # fmt: skip
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._fields = fields
        self.card = None  # the model's `ModelCard`, once built
        self.preprocess = backbones.family(fields["backbone"]).preprocess(fields["backbone"])

    def build(self, input_shape):
        fields = {**self._fields, "img_size": int(input_shape[1])}
        self.card = ModelCard.parse(fields, f"the {FACE_INPUT} layer")
        super().build(input_shape)

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.card.channel_order == "BGR":
            images = ops.flip(images, axis=-1)
        return self.preprocess(images)

    def get_config(self) -> dict:
        card = self.card.to_dict() if self.card is not None else self._fields
        return {**super().get_config(), "card": card}


def model_card(model: keras.Model) -> ModelCard:
    """The card of a model built by `build_model`."""
    return model.get_layer(FACE_INPUT).card


def set_card(model: keras.Model, card: ModelCard) -> None:
    """Records `card` in the model (training's calibration and provenance, when it ends)."""
    model.get_layer(FACE_INPUT).card = card


def build_model(
    model_name: str,
    crop: CropSpec,
    weights: str | None = "imagenet",
    dropout: float = 0.0,
    batchnorm_momentum: float | None = None,
    channel_order: str = "RGB",
    feature_norm: bool = False,
) -> keras.Model:
    """Backbone (include_top=False, average pooling), optional batch norm (`feature_norm`) and
    dropout, the two softmax heads, for the crops `crop` says (its input size; the model records
    the rest, so every runtime crops as training did).

    The backbone's layers sit flat in the model, as in the original project, so its published
    HDF5 weights load layer by layer. `batchnorm_momentum` (Keras' default is 0.99 or 0.999)
    helps from-scratch training and small data sets, where slow moving averages leave the
    inference-mode statistics far behind the weights.
    """
    backbone_family = backbones.family(model_name)
    constructor = backbone_family.constructor(model_name)
    is_file = weights is not None and Path(weights).is_file()
    backbones.check_weights(model_name, weights, is_file)
    img_size = crop.size
    inputs = keras.Input((img_size, img_size, 3), name="image")
    card = ModelCard.of(model_name, crop, channel_order=channel_order)
    preprocessed = FaceInput(card.to_dict(), name=FACE_INPUT)(inputs)
    try:
        backbone = constructor(
            include_top=False,
            weights=weights,
            input_tensor=preprocessed,
            input_shape=(img_size, img_size, 3),  # makes Keras check the size
            pooling="avg",
        )
    except UserError:  # the face networks' packages, named in their own line
        raise
    except ValueError as error:
        message = f"{model_name} refuses model.img_size={img_size} or its weights: {error}"
        raise UserError(message) from error
    except Exception as error:  # keras.utils.get_file raises a bare Exception when offline
        if is_file:  # a file that is not this backbone's weights
            raise UserError(f"cannot load model.weights={weights} into {model_name}: "
                            f"{str(error).splitlines()[0]}") from error  # fmt: skip
        raise UserError(
            f"cannot get the ImageNet weights of {model_name} ({error}); train from scratch with "
            "model.weights=null, or place the weight file in ~/.keras/models"
        ) from error
    if batchnorm_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = batchnorm_momentum
    features = backbone.output
    if feature_norm:  # a pretrained network's features share a large offset that slows the heads
        momentum = 0.99 if batchnorm_momentum is None else batchnorm_momentum
        features = keras.layers.BatchNormalization(momentum=momentum, name=FEATURE_NORM)(features)
    if dropout > 0:
        features = keras.layers.Dropout(dropout)(features)
    # float32 heads keep the softmax stable under mixed precision.
    bias = backbone_family.head_bias
    gender = keras.layers.Dense(
        GENDER_CLASSES, activation="softmax", use_bias=bias, name=GENDER, dtype="float32"
    )(features)
    age = keras.layers.Dense(
        AGE_CLASSES, activation="softmax", use_bias=bias, name=AGE, dtype="float32"
    )(features)
    return keras.Model(inputs, [gender, age], name=f"age_gender_{model_name}")


AGES = np.arange(AGE_CLASSES, dtype="float32")


def expected_age(probabilities):
    """The mean of an age distribution over 0..100: the age the model predicts."""
    return ops.sum(probabilities * AGES, axis=-1)


@keras.saving.register_keras_serializable(package="age_gender")
def age_mae(y_true, y_pred):
    """Absolute error of the expected ages; works with one-hot and mixed (soft) targets."""
    return ops.abs(expected_age(y_true) - expected_age(y_pred))


def label_distribution(ages_one_hot, sigma: float):
    """DLDL's target: each age's one-hot (or mixup's soft) label spread into a Gaussian of
    `sigma` years around it, cut to 0..100 and summing to 1."""
    distance = AGES[:, None] - AGES[None, :]
    kernel = np.exp(-(distance**2) / (2 * sigma**2))
    kernel /= kernel.sum(axis=1, keepdims=True)
    return ops.matmul(ops.cast(ages_one_hot, "float32"), ops.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="age_gender")
class DLDLLoss(keras.losses.Loss):
    """DLDL-v2 (Gao et al., 2018): KL divergence to a Gaussian label distribution, plus the
    L1 error of the expected age, so the distribution learns neighbouring ages and its mean
    learns the age itself."""

    def __init__(self, sigma: float = 2.0, l1_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = sigma
        self.l1_weight = l1_weight

    def call(self, y_true, y_pred):
        target = label_distribution(y_true, self.sigma)
        eps = keras.config.epsilon()
        divergence = ops.sum(target * (ops.log(target + eps) - ops.log(y_pred + eps)), axis=-1)
        return divergence + self.l1_weight * age_mae(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "sigma": self.sigma, "l1_weight": self.l1_weight}


@keras.saving.register_keras_serializable(package="age_gender")
class MeanVarianceLoss(keras.losses.Loss):
    """Mean-variance loss (Pan et al., CVPR 2018): cross-entropy, plus half the squared error
    of the expected age and the distribution's variance, with the paper's weights."""

    def __init__(self, mean_weight: float = 0.2, variance_weight: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.mean_weight = mean_weight
        self.variance_weight = variance_weight

    def call(self, y_true, y_pred):
        cross_entropy = keras.losses.categorical_crossentropy(y_true, y_pred)
        mean = expected_age(y_pred)
        variance = ops.sum(y_pred * (AGES - mean[:, None]) ** 2, axis=-1)
        squared = ops.square(mean - expected_age(ops.cast(y_true, "float32")))
        return cross_entropy + self.mean_weight * squared / 2 + self.variance_weight * variance

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "mean_weight": self.mean_weight,
            "variance_weight": self.variance_weight,
        }


def age_loss(name: str, sigma: float = 2.0) -> keras.losses.Loss:
    """The age head's loss (`config.AgeLoss`): `ce` (the original's), `dldl` or
    `mean_variance`."""
    if name == "dldl":
        return DLDLLoss(sigma)
    if name == "mean_variance":
        return MeanVarianceLoss()
    return keras.losses.CategoricalCrossentropy()


def compile_model(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    age_loss_weight: float = 1.0,
    gender_loss_weight: float = 1.0,
    jit_compile: bool | str = "auto",
    age_loss_name: str = "ce",
    age_sigma: float = 2.0,
) -> None:
    """Cross-entropy on the gender head, `age_loss_name` on the age head; logs gender accuracy
    and age MAE of the expected value."""
    model.compile(
        optimizer=optimizer,
        loss={
            GENDER: keras.losses.CategoricalCrossentropy(),
            AGE: age_loss(age_loss_name, age_sigma),
        },
        loss_weights={GENDER: gender_loss_weight, AGE: age_loss_weight},
        metrics={AGE: [keras.metrics.MeanMetricWrapper(age_mae, name="mae")]},
        # Weighted: rows of unknown gender (loss weight 0) do not count in the accuracy.
        weighted_metrics={GENDER: [keras.metrics.CategoricalAccuracy(name="accuracy")]},
        jit_compile=jit_compile,
    )
