"""What a model's spread means, fitted on faces it did not train on: `age_std` so that 68.3 % of
true ages lie within one of it and 95.4 % within two, as near as a Gaussian can, and a
split-conformal 90 % interval.

A softmax's spread is too sure or too unsure by a factor, and its errors have heavier tails
than a Gaussian: one scale makes 1 age_std right and 2 too narrow. `age_std = scale * spread **
power` with power > 1 widens the spreads of the faces the model is unsure of more than the rest,
which is where the large errors are. Where the tails are heavier still (no power brings 2 age_std
to 95.4 % with 1 at 68.3 %), the scale and power are those whose shares are nearest both, each
share's miss counted in its binomial spreads, so neither carries it all. The interval does not
rely on any shape (Vovk et al.'s split conformal prediction: the (n + 1) x 90 % -th smallest
error in age_std).
"""

import math

import numpy as np

from age_gender.models.card import ModelCard
from age_gender.schema import MAX_AGE

ONE_STD, TWO_STD = 0.6827, 0.9545  # a Gaussian's share within 1 and 2 standard deviations
POWERS = np.linspace(0.5, 2.5, 41)
SCALE_QUANTILES = np.linspace(0.55, 0.85, 121)  # the scales tried: these shares within 1 age_std
# Below this many faces a 90 % interval's share on new faces is uncertain by more than 1.7 points
# (`share_spread`): worth a warning, not a refusal.
FEW_FACES = 300
# What `coverage`'s figures are, as the evaluation report and the store's model cards name them.
COVERAGE_LABELS = {
    "within_1_std": "true age within 1 age_std (68.3 %)",
    "within_2_std": "true age within 2 age_std (95.4 %)",
    "within_interval": "true age within age_low..age_high (90 %)",
}


def calibrated(
    means: np.ndarray, spreads: np.ndarray, card: ModelCard | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The age_std and the interval (low, high; NaN where the card has none) `card` makes of the
    age softmax's means and raw spreads; no card: the raw spread, no interval."""
    means, spreads = np.asarray(means, float), np.asarray(spreads, float)
    if card is None:
        return spreads, np.full_like(means, np.nan), np.full_like(means, np.nan)
    stds = card.age_std_scale * spreads**card.age_std_power
    half = np.nan if card.interval_scale is None else card.interval_scale * stds
    return stds, np.maximum(means - half, 0.0), np.minimum(means + half, MAX_AGE)


def fit_spread(errors: np.ndarray, spreads: np.ndarray) -> tuple[float, float]:
    """(scale, power) whose age_std = scale * spread ** power holds `errors` (|true - predicted
    age|) within 1 and 2 of it nearest 68.3 % and 95.4 %: the smallest of the larger miss of
    the two, each in its share's binomial spread (`misses`)."""
    spreads = np.maximum(spreads, 1e-6)
    fits = []
    for power in POWERS:
        ratios = np.sort(errors / spreads**power)
        scales = np.quantile(ratios, SCALE_QUANTILES)
        miss = misses(ratios, scales).max(axis=0)
        best = len(miss) - 1 - int(np.argmin(miss[::-1]))  # a tie: the wider age_std
        fits.append((float(miss[best]), -float(scales[best]), float(power)))
    _, wider, power = min(fits)
    return -wider, power


def misses(sorted_ratios: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """How far the shares of errors within 1 and 2 age_std (rows), for each of `scales`, are
    from 68.3 % and 95.4 %, in each share's binomial spread sqrt(p (1 - p)): a miss of 1 point
    at 95.4 % weighs as 2.2 at 68.3 %."""
    rows = []
    for width, target in ((1, ONE_STD), (2, TWO_STD)):
        share = np.searchsorted(sorted_ratios, width * scales, side="right") / len(sorted_ratios)
        rows.append(np.abs(share - target) / np.sqrt(target * (1 - target)))
    return np.array(rows)


def share_spread(level: float, faces: int) -> float:
    """How far an interval's share of `level` fitted on `faces` may be from its share on new
    faces: the binomial spread sqrt(level (1 - level) / faces)."""
    return math.sqrt(level * (1 - level) / faces)


def few_faces_warning(level: float, faces: int) -> str | None:
    """The warning for a calibration on fewer than `FEW_FACES` faces, else None."""
    if faces >= FEW_FACES:
        return None
    return (
        f"warning: calibrated on {faces} validation faces only: the {level * 100:g} % interval "
        f"holds on new faces to about +-{share_spread(level, faces):.1%} (with {FEW_FACES}: "
        f"+-{share_spread(level, FEW_FACES):.1%})"
    )


def fit_interval(errors: np.ndarray, stds: np.ndarray, level: float) -> float:
    """The interval's half-width in age_std: at least `level` of new faces' true ages lie within
    it, where they are exchangeable with these (split conformal)."""
    ratios = np.sort(errors / np.maximum(stds, 1e-6))
    rank = min(math.ceil((len(ratios) + 1) * level), len(ratios)) - 1
    return float(ratios[rank])


def coverage(
    errors: np.ndarray, stds: np.ndarray, interval_scale: float | None = None
) -> dict[str, float]:
    """Shares of true ages within 1 and 2 age_std and, given its scale, within the interval."""
    ratios = errors / np.maximum(stds, 1e-6)
    figures = {"within_1_std": float(np.mean(ratios <= 1)),
               "within_2_std": float(np.mean(ratios <= 2))}  # fmt: skip
    if interval_scale is not None:
        figures["within_interval"] = float(np.mean(ratios <= interval_scale))
    return figures


def calibrate(
    errors: np.ndarray, spreads: np.ndarray, level: float, seed: int = 0
) -> tuple[dict[str, float], dict[str, float]]:
    """The card's calibration fields fitted on all faces (the interval holding `level` of true
    ages), and the coverage they reach on faces they were not fitted on: fitted on one half,
    measured on the other."""
    order = np.random.default_rng(seed).permutation(len(errors))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    if not len(fit):  # one face: measured on what it was fitted on
        fit = held
    scale, power = fit_spread(errors[fit], spreads[fit])
    interval = fit_interval(errors[fit], scale * spreads[fit] ** power, level)
    held_out = coverage(errors[held], scale * spreads[held] ** power, interval)
    scale, power = fit_spread(errors, spreads)
    fields = {
        "age_std_scale": scale,
        "age_std_power": power,
        "interval_scale": fit_interval(errors, scale * spreads**power, level),
    }
    if not all(0 < value < math.inf for value in fields.values()):  # no error or no spread
        raise ValueError(f"the spread cannot be calibrated on these faces: {fields}")
    return fields, held_out
