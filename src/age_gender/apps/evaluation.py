"""Evaluation: predictions for a labelled set, the metrics, a side-by-side table and PNG plots.

Metrics: MAE (against apparent and real age where both exist), the ChaLearn LAP epsilon-error,
CS@5 (share within 5 years), gender accuracy, and MAE by age group (0-9, ..., 70+).
"""

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from age_gender.data import labels
from age_gender.data.records import prediction_record
from age_gender.errors import UserError, printable
from age_gender.faces.crops import is_box, overlaps
from age_gender.faces.detection import FaceDetector
from age_gender.files import (
    atomic_output,
    check_inputs_kept,
    check_output_folder,
    make_output_folder,
    remove_leftovers,
)
from age_gender.images import read_image
from age_gender.models import calibration
from age_gender.plots import plot_age_groups, plot_predicted_vs_real, plot_reliability
from age_gender.schema import BOX_COLUMNS, PREDICTION_COLUMNS

# Metrics ------------------------------------------------------------------------------------


def mean_absolute_error(predicted, true) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(true))))


def epsilon_error(predicted, mean, std) -> float:
    """ChaLearn LAP: 1 - exp(-(pred - mean)^2 / (2 std^2)), averaged over images."""
    predicted, mean, std = (np.asarray(values, float) for values in (predicted, mean, std))
    return float(np.mean(1 - np.exp(-((predicted - mean) ** 2) / (2 * std**2))))


def cumulative_score(predicted, true, years: float = 5) -> float:
    """Share of images whose predicted age is within `years` of the true age."""
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(true)) <= years))


def gender_accuracy(predicted, true) -> float:
    """Share of right genders ("M" / "F", the output schema's) among the faces whose gender is
    known (`true`: 1 male, 0 female, -1 unknown); NaN if none is."""
    predicted, true = (np.asarray(predicted) == "M").astype(int), np.asarray(true)
    known = true >= 0
    return float(np.mean(predicted[known] == true[known])) if known.any() else math.nan


NO_GROUP = "(none)"  # the group of rows whose --group_by value is empty


def mae_by_group(table: pd.DataFrame, column: str) -> dict[str, dict]:
    """N, MAE, CS@5 and gender accuracy of each value of `column` (a subject for
    leave-one-person-out studies, a race for fairness); rows without a value are a group of
    their own, `(none)`, not left out."""
    empty = table[column].isna() | (table[column].astype(str) == "")
    groups = list(table[~empty].groupby(column, sort=True))
    if empty.any():
        groups.append((NO_GROUP, table[empty]))
    return {
        str(value): {
            "n": int(len(group)),
            "mae": mean_absolute_error(group["age"], group["true_age"]),
            "cs5": cumulative_score(group["age"], group["true_age"]),
            "gender_accuracy": gender_accuracy(group["gender"], group["true_gender"]),
        }
        for value, group in groups
    }


def group_gaps(groups: dict[str, dict]) -> dict[str, float]:
    """The worst group's figure less the best's (MAE, gender accuracy): what a model's
    average hides about the faces it serves worst."""
    named = [entry for name, entry in groups.items() if name != NO_GROUP]
    gaps = {}
    for key in ("mae", "gender_accuracy"):
        figures = [entry[key] for entry in named if not math.isnan(entry[key])]
        gaps[key] = max(figures) - min(figures) if len(figures) > 1 else math.nan
    return gaps


def spread_coverage(table: pd.DataFrame) -> dict[str, float]:
    """Shares of faces whose true age lies within 1 and 2 `age_std` of the prediction and, for a
    model that gives one, within its 90 % interval (age_low..age_high)."""
    errors = (table["age"] - table["true_age"]).abs().to_numpy(float)
    figures = calibration.coverage(errors, table["age_std"].to_numpy(float))
    if table["age_low"].notna().all():
        inside = table["true_age"].between(table["age_low"], table["age_high"])
        figures["within_interval"] = float(inside.mean())
    return figures


def mae_by_age_group(predicted, true) -> dict[str, dict]:
    """Count and MAE for each true-age group; an empty group has MAE None."""
    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    decades = labels.age_groups(pd.Series(true)).to_numpy()
    groups = {}
    for name in labels.AGE_GROUP_NAMES:
        inside = decades == name
        error = mean_absolute_error(predicted[inside], true[inside]) if inside.any() else None
        groups[name] = {"n": int(inside.sum()), "mae": error}
    return groups


# Predicting ---------------------------------------------------------------------------------


def face_box(
    row_box: np.ndarray, row_eyes: tuple | None, image: np.ndarray, detector: FaceDetector | None
) -> tuple[tuple, tuple | None, bool]:
    """The row's box (`labels.face_boxes`) with its eyes (`labels.row_eyes`), else the
    detector's best face with its eyes, else the whole image (a crop, as UTKFace's) with the
    row's eyes, as training turns it; and whether the detector, when asked, found a face."""
    if is_box(row_box):
        return tuple(int(value) for value in row_box), row_eyes, True
    found = detector.detect(image) if detector is not None else []
    if found:
        return found[0].box, found[0].eyes, True
    return (0, 0, image.shape[1], image.shape[0]), row_eyes, detector is None


def predict_rows(
    estimator, rows: pd.DataFrame, root: Path, detector=None, batch_size: int = 32
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One prediction per row (each face of an image is its own row), `batch_size` faces per
    model call.

    Returns the predictions (file and the output schema's prediction columns: age, age_std,
    age_low, age_high, gender, gender_probability) indexed like `rows`, the files that could not
    be read, and those where the detector found no face (predicted on the whole image instead,
    so they stay in N).
    """
    records, unreadable, no_face = [], [], []
    with tqdm(total=len(rows), desc=estimator.name, unit="image") as bar:
        boxes, eyes_of_rows = labels.face_boxes(rows), labels.row_eyes(rows)
        for start in range(0, len(rows), batch_size):
            faces, done = [], []
            chunk = rows.iloc[start : start + batch_size]
            for row, row_box, row_eyes in zip(
                chunk.itertuples(),
                boxes[start : start + len(chunk)],
                eyes_of_rows[start : start + len(chunk)],
                strict=True,
            ):
                image = read_image(root / row.img_paths)
                name = printable(row.img_paths)  # the report is read by people: text
                if image is None:
                    unreadable.append(name)
                    continue
                box, eyes, found = face_box(row_box, row_eyes, image, detector)
                if not overlaps(image.shape, box):
                    unreadable.append(f"{name} (face box outside the image)")
                    continue
                if not found:
                    no_face.append(name)
                faces.append((image, box, eyes))
                done.append(row)
            inputs = [estimator.inputs(image, [box], [eyes]) for image, box, eyes in faces]
            for row, prediction in zip(done, estimator.predict_inputs(inputs), strict=True):
                records.append(
                    {
                        "row": row.Index,
                        "file": printable(row.img_paths),
                        **prediction_record(prediction, False),
                    }
                )
            bar.update(min(batch_size, len(rows) - start))
    columns = ["row", "file", *PREDICTION_COLUMNS]
    return pd.DataFrame(records, columns=columns).set_index("row"), unreadable, no_face


def summarize(
    table: pd.DataFrame, unreadable: list[str], no_face: list[str], group_by: str | None = None
) -> dict:
    """The metrics of a predictions table that holds `true_age` (and APPA's apparent columns),
    with the MAE of each `group_by` value when asked."""
    predicted = table["age"]
    summary = {
        "n": int(len(table) + len(unreadable)),
        "evaluated": int(len(table)),
        "unreadable": unreadable,
        "no_face_found": no_face,
        "mae": mean_absolute_error(predicted, table["true_age"]),
    }
    if {"apparent_age_avg", "apparent_age_std"} <= set(table.columns):
        summary["mae_apparent"] = mean_absolute_error(predicted, table["apparent_age_avg"])
        summary["epsilon_error"] = epsilon_error(
            predicted, table["apparent_age_avg"], table["apparent_age_std"]
        )
    summary["cs5"] = cumulative_score(predicted, table["true_age"], 5)
    summary["gender_accuracy"] = gender_accuracy(table["gender"], table["true_gender"])
    summary["gender_known"] = int((table["true_gender"] >= 0).sum())
    summary["mae_by_age_group"] = mae_by_age_group(predicted, table["true_age"])
    old = (table["true_age"] >= 60).to_numpy()
    if old.any():  # the tail of the age range, where skewed training data fails first
        summary["mae_60_plus"] = mean_absolute_error(predicted[old], table["true_age"][old])
    if table["age_std"].notna().all():  # dlib-models gives no spread
        summary.update(spread_coverage(table))
    if group_by:
        summary["group_by"] = group_by
        summary["mae_by_group"] = mae_by_group(table, group_by)
        summary["group_gap"] = group_gaps(summary["mae_by_group"])
    return summary


# Reporting ----------------------------------------------------------------------------------

TABLE_ROWS = [
    ("n", "N", "{:d}"),
    ("evaluated", "  evaluated (readable)", "{:d}"),
    ("mae_apparent", "MAE vs apparent age", "{:.2f}"),
    ("mae", "MAE vs real age", "{:.2f}"),
    ("epsilon_error", "epsilon-error", "{:.4f}"),
    ("mae_60_plus", "MAE of ages 60+", "{:.2f}"),
    ("cs5", "CS@5", "{:.3f}"),
    ("gender_accuracy", "gender accuracy", "{:.3f}"),
    ("gender_known", "  faces of known gender", "{:d}"),
    *((key, label, "{:.3f}") for key, label in calibration.COVERAGE_LABELS.items()),
]


def cell(style: str, value) -> str:
    """A figure as the table shows it; '-' for an undefined one."""
    undefined = value is None or (isinstance(value, float) and math.isnan(value))
    return "-" if undefined else style.format(value)


def format_table(summaries: dict[str, dict]) -> str:
    """One column per model: the headline metrics, then MAE per age group."""
    lines = [("", *summaries)]
    for key, title, style in TABLE_ROWS:
        if any(key in summary for summary in summaries.values()):
            lines.append((title, *(cell(style, s.get(key)) for s in summaries.values())))
    first = next(iter(summaries.values()))
    by = first.get("group_by")
    for key, figure, prefix, style in (
        ("mae_by_age_group", "mae", "MAE", "{:.2f}"),
        ("mae_by_group", "mae", f"MAE {by}", "{:.2f}"),
        ("mae_by_group", "gender_accuracy", f"gender {by}", "{:.3f}"),
    ):
        for group in first.get(key, {}):
            cells = []
            for summary in summaries.values():
                entry = summary[key][group]
                cells.append(f"{cell(style, entry[figure])} ({entry['n']})")
            lines.append((f"{prefix} {group}", *cells))
    if "group_gap" in first:
        for figure, title, style in (
            ("mae", "MAE", "{:.2f}"),
            ("gender_accuracy", "gender", "{:.3f}"),
        ):
            cells = [cell(style, summary["group_gap"][figure]) for summary in summaries.values()]
            lines.append((f"{title} gap, worst {by} - best", *cells))
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def json_safe(value):
    """The summary with undefined figures (NaN, infinities) as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(table: pd.DataFrame, summary: dict, output_dir: Path) -> None:
    """predictions.csv, summary.json and the plots, written into a temporary folder that then
    replaces `output_dir` whole: a run that fails (a full disk) leaves the earlier report as
    it was, never half of each."""
    make_output_folder(output_dir.parent)
    with atomic_output(output_dir) as folder:
        folder.mkdir()
        table.to_csv(folder / "predictions.csv", index=False)
        (folder / "summary.json").write_text(
            json.dumps(json_safe(summary), indent=1, allow_nan=False)
        )
        title = f"MAE {summary['mae']:.2f} over {summary['evaluated']} images"
        plot_predicted_vs_real(table, title, folder / "predicted_vs_real.png")
        plot_age_groups(summary["mae_by_age_group"], folder / "mae_by_age_group.png")
        if "within_1_std" in summary:
            plot_reliability(table, folder / "age_std_reliability.png")


def report_folder(output_dir: Path, estimator) -> Path:
    """Each model's report folder: its path (or name) with `_` for anything else than letters,
    digits, `.` and `-`, so two runs' best.keras stay apart; a path too long to be one file
    name (255 bytes) keeps its end and a digest of the whole."""
    name = re.sub(r"[^\w.-]+", "_", estimator.name)
    if len(name.encode()) > 200:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{digest}_{name.encode()[-180:].decode(errors='ignore')}"
    return output_dir / name


def check_reports(
    output_dir: Path, estimators: list, overwrite: bool, inputs: tuple[Path, ...] = ()
) -> None:
    """Refuses, before any prediction, to replace an earlier run's report without
    `overwrite`, or one that holds an input (the labels, the images): a report is replaced
    whole. A report a killed run had moved aside is put back first. Two models whose reports
    would share a folder (one named twice; `a b/m.keras` and `a_b/m.keras`) are refused."""
    folders = {}
    for estimator in estimators:
        folder = report_folder(output_dir, estimator)
        if folder in folders and folders[folder] == estimator.name:
            raise UserError(f"{estimator.name} is named twice: each model is evaluated once, "
                            "into its own report folder")  # fmt: skip
        if folder in folders:
            raise UserError(f"{folders[folder]} and {estimator.name} would share the report "
                            f"folder {folder}: copy one to another name")  # fmt: skip
        folders[folder] = estimator.name
    remove_leftovers(output_dir, [folder.name for folder in folders])
    existing = [folder for folder in folders if folder.exists()]
    check_inputs_kept(existing, list(inputs))
    if existing and not overwrite:
        raise UserError(
            f"{existing[0]} holds an earlier report; pass --overwrite to replace it or choose "
            "another --output_dir"
        )


def evaluate(
    estimators: list,
    truth: pd.DataFrame,
    root: Path,
    output_dir: Path,
    detector=None,
    batch_size: int = 32,
    group_by: str | None = None,
) -> dict[str, dict]:
    """Evaluates each estimator on `truth` (img_paths, true_age, true_gender, ...), writes a
    report per model under `output_dir/<model path with _ for />/` and returns the summaries
    by model name (the path as given, so two runs' best.keras stay apart)."""
    truth = truth.reset_index(drop=True)
    wanted = ("true_age", "true_gender", *BOX_COLUMNS, group_by)
    keep = [column for column in truth if column in wanted or column.startswith("apparent_age")]
    summaries = {}
    for estimator in estimators:
        predictions, unreadable, no_face = predict_rows(
            estimator, truth, root, detector, batch_size
        )
        if predictions.empty:
            raise UserError(
                f"none of the {len(truth)} images could be read (e.g. {root / unreadable[0]}); "
                "check the image folder"
            )
        table = predictions.join(truth[keep])  # row by row: an image may hold several faces
        summary = summarize(table, unreadable, no_face, group_by)
        write_report(table, summary, report_folder(output_dir, estimator))
        summaries[estimator.name] = summary
    return summaries


def run(
    estimators: list,
    truth: pd.DataFrame,
    root: Path,
    output_dir: Path,
    detector=None,
    batch_size: int = 32,
    overwrite: bool = False,
    group_by: str | None = None,
    inputs: tuple[Path, ...] = (),
) -> dict[str, dict]:
    """Evaluates the models on `truth`, each into its own report folder, and prints the table;
    an earlier report is replaced only with `overwrite`, and never one holding `inputs`."""
    check_output_folder(output_dir)
    if group_by and group_by not in (*truth.columns, labels.AGE_GROUP):
        raise UserError(f"--group_by {group_by}: the labels have no such column")
    if group_by:
        truth = truth.assign(**{group_by: labels.group_column(truth, group_by, "true_age")})
    if group_by in ("file", *PREDICTION_COLUMNS):
        raise UserError(f"--group_by {group_by}: a column of the predictions table has this "
                        "name; rename it in the CSV")  # fmt: skip
    check_reports(output_dir, estimators, overwrite, inputs)
    summaries = evaluate(estimators, truth, root, output_dir, detector, batch_size, group_by)
    print(format_table(summaries))
    print(f"reports in {output_dir}/")
    return summaries
