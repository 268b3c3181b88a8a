"""The PNG plots people look at: learning curves and evaluation reports."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import norm

from age_gender.files import atomic_output
from age_gender.schema import AGE, GENDER

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def save_png(figure, path: Path) -> None:
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def plot_learning_curves(log: pd.DataFrame, path: Path) -> None:
    """Loss, age MAE and gender accuracy per epoch, training and validation, as one PNG."""
    panels = [
        ("loss", "loss"),
        (f"{AGE}_mae", "age MAE (years)"),
        (f"{GENDER}_accuracy", "gender accuracy"),
    ]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), constrained_layout=True
    )
    epochs = log["epoch"] + 1
    for axis, (key, title) in zip(axes, panels, strict=True):
        axis.plot(epochs, log[key], marker="o", label="training")
        if f"val_{key}" in log:
            axis.plot(epochs, log[f"val_{key}"], marker="o", label="validation")
        axis.set(title=title, xlabel="epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    save_png(figure, path)


def plot_predicted_vs_real(table: pd.DataFrame, title: str, path: Path) -> None:
    """Scatter of predicted against real age, with the diagonal."""
    figure, axis = plt.subplots(figsize=(5, 5), constrained_layout=True)
    axis.scatter(table["true_age"], table["age"], s=6, alpha=0.5)
    axis.plot([0, 100], [0, 100], color="grey", linewidth=1)
    axis.set(xlabel="real age", ylabel="predicted age", xlim=(0, 100), ylim=(0, 100), title=title)
    save_png(figure, path)


def plot_age_groups(groups: dict[str, dict], path: Path) -> None:
    """Bars of MAE per age group, each labelled with its number of images."""
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    values = [entry["mae"] if entry["mae"] is not None else 0.0 for entry in groups.values()]
    bars = axis.bar(list(groups), values)
    axis.bar_label(bars, labels=[f"n={entry['n']}" for entry in groups.values()], fontsize=8)
    axis.set(xlabel="real age group", ylabel="MAE (years)", title="MAE by age group")
    save_png(figure, path)


def plot_reliability(table: pd.DataFrame, path: Path) -> None:
    """Does `age_std` mean what it says? For each nominal share p, the share of faces whose
    true age lies within the Gaussian interval of p around the prediction (z_p x age_std); a
    calibrated spread follows the diagonal, an overconfident one lies below it. The model's
    90 % interval, where it gives one, is the square at 0.9."""
    nominal = np.linspace(0.05, 0.95, 19)
    error = (table["age"] - table["true_age"]).abs().to_numpy()
    std = table["age_std"].to_numpy(float)
    observed = [np.mean(error <= norm.ppf((1 + p) / 2) * std) for p in nominal]
    figure, axis = plt.subplots(figsize=(5, 5), constrained_layout=True)
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1, label="calibrated")
    axis.plot(nominal, observed, marker="o", label="this model")
    if table.get("age_low") is not None and table["age_low"].notna().all():
        inside = table["true_age"].between(table["age_low"], table["age_high"]).mean()
        axis.plot([0.9], [inside], marker="s", markersize=9, linestyle="none", color="C3",
                  label="its 90 % interval (age_low..age_high)")  # fmt: skip
    axis.set(xlabel="nominal share (Gaussian interval of age_std)", xlim=(0, 1), ylim=(0, 1),
             ylabel="share of true ages inside", title="age_std reliability")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend()
    save_png(figure, path)
