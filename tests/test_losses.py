"""Age losses and age balance: DLDL's target, each loss's preference for the true age,
mean-variance, the balanced (LDS) weights and their way into the loss."""

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

from age_gender.data import dataset
from age_gender.faces.crops import CropSpec
from age_gender.models import model


def test_the_dldl_target_sums_to_one_and_peaks_at_the_true_age():
    one_hot = keras.utils.to_categorical([0, 37, 100], 101)
    target = np.asarray(model.label_distribution(one_hot, 2.0))
    assert np.allclose(target.sum(axis=1), 1.0)
    assert target.argmax(axis=1).tolist() == [0, 37, 100]
    assert target[1, 36] == pytest.approx(target[1, 38]) and target[1, 35] < target[1, 36]


@pytest.mark.parametrize("name", ["ce", "dldl", "mean_variance"])
def test_each_age_loss_prefers_the_true_age(name):
    loss = model.age_loss(name)
    truth = keras.utils.to_categorical([40], 101)
    near = keras.utils.to_categorical([41], 101) * 0.6 + truth * 0.3 + 0.1 / 101
    far = keras.utils.to_categorical([60], 101) * 0.6 + truth * 0.3 + 0.1 / 101
    assert float(loss(truth, near)) < float(loss(truth, far))
    if name != "ce":  # the expected-age terms see how far a wrong age is
        farther = keras.utils.to_categorical([90], 101) * 0.6 + truth * 0.3 + 0.1 / 101
        assert float(loss(truth, far)) < float(loss(truth, farther))


def test_mean_variance_punishes_a_spread_out_guess():
    loss = model.age_loss("mean_variance")
    truth = keras.utils.to_categorical([50], 101)
    sharp = 0.5 * truth + 0.25 * keras.utils.to_categorical([49], 101)
    sharp += 0.25 * keras.utils.to_categorical([51], 101)
    wide = 0.5 * truth + 0.25 * keras.utils.to_categorical([30], 101)
    wide += 0.25 * keras.utils.to_categorical([70], 101)
    assert float(loss(truth, sharp)) < float(loss(truth, wide))


def test_balanced_weights_raise_rare_ages_and_keep_the_mean():
    ages = np.array([25] * 500 + [30] * 400 + [80] * 5)
    weights = dataset.balanced_age_weights(ages)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[-1] > 5 * weights[0]
    assert weights[0] < weights[500]  # 25 is commoner than 30


def test_balanced_weights_reach_the_loss(tmp_path):
    frame = pd.DataFrame({
        "genders": [0, 1, 0, 1], "ages": [20, 20, 20, 70], "img_paths": ["a.png"] * 4
    })  # fmt: skip
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    weights = dataset.balanced_age_weights(frame["ages"].to_numpy())
    data = dataset.make_dataset(frame, tmp_path, CropSpec(8), 4, age_weights=weights)
    _, _, (gender_weights, age_weights) = next(iter(data))
    assert np.allclose(age_weights, weights) and np.allclose(gender_weights, 1.0)


def test_group_weights_let_groups_weigh_alike_and_reach_the_gender_loss(tmp_path):
    races = pd.Series(["White"] * 6 + ["Asian"] * 2 + [None] * 2, dtype=object)
    weights = dataset.balanced_group_weights(races, power=1.0)
    assert weights.mean() == pytest.approx(1.0)
    # Each group, the faces without one included, weighs the same in all.
    assert (
        weights[:6].sum() == pytest.approx(weights[6:8].sum()) == pytest.approx(weights[8:].sum())
    )
    frame = pd.DataFrame({"genders": [0, 1] * 5, "ages": 30, "img_paths": ["a.png"] * 10})
    frame.loc[9, "genders"] = -1  # unknown: no gender loss, whatever its group
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    data = dataset.make_dataset(frame, tmp_path, CropSpec(8), 10, gender_weights=weights)
    _, _, (gender_weights, age_weights) = next(iter(data))
    assert np.allclose(gender_weights, [*weights[:9], 0.0]) and np.allclose(age_weights, 1.0)
