"""The rows of the output table (`schema.COLUMNS`: a row per face, or per image without one) and
the files they are written to: the demo's predictions.csv / .json, annotate's CSV / JSONL /
Parquet; the Python API's records and the server's JSON faces are the same rows.
"""

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from age_gender.errors import UserError, printable
from age_gender.files import atomic_output
from age_gender.schema import (
    BOX_COLUMNS,
    COLUMNS,
    INTEGER_COLUMNS,
    NO_FACE,
    OK,
    UNREADABLE,
    Prediction,
)

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


def prediction_record(prediction: Prediction, rounded: bool = True) -> dict:
    """A prediction's columns: age, its spread and its 90 % interval (NaN where a model gives
    none, dlib-models), gender and its probability; rounded for people to read, or not, for the
    metrics computed from them (evaluation)."""

    def shown(value: float, digits: int) -> float:
        return round(value, digits) if rounded else value

    return {
        "age": shown(prediction.age, 2),
        "age_std": shown(prediction.age_std, 2),
        "age_low": shown(prediction.age_low, 2),
        "age_high": shown(prediction.age_high, 2),
        "gender": prediction.gender,
        "gender_probability": shown(prediction.gender_probability, 4),
    }


def json_record(record: dict) -> dict:
    """A record as JSON holds it: NaN (dlib-models' age_std and interval) as null."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in record.items()}  # fmt: skip


def detection_record(face) -> dict:
    """A detected face's columns (`schema.Face`): its box and the detector's score."""
    return {**dict(zip(BOX_COLUMNS, face.box, strict=True)), "score": round(face.score, 3)}


def face_record(face, prediction: Prediction) -> dict:
    """A detected face's columns with its prediction's."""
    return {**detection_record(face), **prediction_record(prediction)}


def unreadable_row(file: str) -> dict:
    """The row of an image that cannot be read (not an image, cut short, corrupt)."""
    return {"file": file, "status": UNREADABLE}


def image_rows(
    file: str | None,
    shape: tuple,
    faces: list,
    predictions: list | None = None,
    frame: int | None = None,
) -> list[dict]:
    """An image's rows: one per detected face (`schema.Face`), with its prediction where given,
    else one row saying the image has no face."""
    base = {"file": file, "frame": frame, "status": OK if faces else NO_FACE,
            "width": shape[1], "height": shape[0], "faces": len(faces)}  # fmt: skip
    if not faces:
        return [base]
    if predictions is None:
        records = [detection_record(face) for face in faces]
    else:
        records = [face_record(face, prediction)
                   for face, prediction in zip(faces, predictions, strict=True)]  # fmt: skip
    return [{**base, "face": index, **record} for index, record in enumerate(records)]


def typed(rows: Iterable[dict]) -> pd.DataFrame:
    """The table: its columns in order, integers as nullable integers. Where a file name is not
    UTF-8, `file` holds Python strings: the name keeps its bytes (as surrogates), which pandas'
    own text type (Arrow, from pandas 3) refuses."""
    rows = list(rows)
    if all(printable(row["file"]) == row["file"] for row in rows):
        table = pd.DataFrame(rows, columns=COLUMNS)
    else:
        table = pd.DataFrame([{**row, "file": None} for row in rows], columns=COLUMNS)
        table["file"] = pd.Series([row["file"] for row in rows], dtype=object)
    return table.astype({**dict.fromkeys(INTEGER_COLUMNS, "Int64"), "score": float})


def table_format(output: Path) -> str:
    """The output's format, by its suffix; Parquet needs pyarrow."""
    suffix = output.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UserError(f"name the output {', '.join(TABLE_SUFFIXES)}, not {output.name}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as error:
            raise UserError("Parquet output needs pyarrow: pip install pyarrow, or name the "
                            "output .csv or .jsonl") from error  # fmt: skip
    return suffix


def write_table(table: pd.DataFrame, output: Path) -> None:
    """Writes the table in the format the output's suffix names (.json: one array), atomically.

    A CSV holds each file name's bytes, those that are not UTF-8 included (`read_csv_table`
    reads them back): it names the very files it lists, and the demo knows its outputs by it.
    JSON and Parquet text is UTF-8 by definition (a JSON escape of a lone surrogate, which
    Python would read back, is refused or replaced by other readers), so there such a name is
    shown with U+FFFD (`printable`)."""
    suffix = output.suffix.lower()
    with atomic_output(output) as temporary:
        if suffix == ".csv":
            table.to_csv(temporary, index=False, errors="surrogateescape")
            return
        shown = table.assign(file=table["file"].map(printable, na_action="ignore"))
        if suffix == ".parquet":
            shown.to_parquet(temporary, index=False)
        else:
            shown.to_json(temporary, orient="records", lines=suffix == ".jsonl", indent=None)


def read_csv_table(path: Path) -> pd.DataFrame:
    """A CSV `write_table` wrote, every value as text (empty where there is none), file names
    with their bytes."""
    return pd.read_csv(path, dtype=object, keep_default_na=False, encoding_errors="surrogateescape")
