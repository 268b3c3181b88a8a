"""The one output schema: a row per face (or per image without one), the same columns in the
demo's predictions.csv / .json, annotate's CSV / JSONL / Parquet, the Python API's records and
the server's JSON faces.
"""

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from age_gender.errors import UserError
from age_gender.estimators.base import Prediction
from age_gender.files import atomic_output
from age_gender.labels import BOX_COLUMNS

OK, NO_FACE, UNREADABLE = "ok", "no face", "unreadable"  # an image's status
IMAGE_COLUMNS = ["file", "frame", "status", "width", "height", "faces"]  # frame: videos only
FACE_COLUMNS = ["face", *BOX_COLUMNS, "score"]
PREDICTION_COLUMNS = ["age", "age_std", "gender", "gender_probability"]
COLUMNS = [*IMAGE_COLUMNS, *FACE_COLUMNS, *PREDICTION_COLUMNS]
INTEGER_COLUMNS = ["frame", "width", "height", "faces", "face", *BOX_COLUMNS]
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")
# A face's columns as the server's JSON types them (age_std: null for dlib-models).
FACE_TYPES = {**dict.fromkeys(BOX_COLUMNS, int), "score": float, "age": float,
              "age_std": float | None, "gender": str, "gender_probability": float}  # fmt: skip


def prediction_record(prediction: Prediction) -> dict:
    """A prediction's columns: age and its spread (NaN where a model gives no distribution,
    dlib-models), gender and its probability."""
    return {
        "age": round(prediction.age, 2),
        "age_std": round(prediction.age_std, 2),
        "gender": prediction.gender,
        "gender_probability": round(prediction.gender_probability, 4),
    }


def detection_record(face) -> dict:
    """A detected face's columns (`faces.Face`): its box and the detector's score."""
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
    """An image's rows: one per detected face (`faces.Face`), with its prediction where given,
    else one row saying the image has no face."""
    base = {"file": file, "frame": frame, "status": OK if faces else NO_FACE,
            "width": shape[1], "height": shape[0], "faces": len(faces)}  # fmt: skip
    if not faces:
        return [base]
    records = [detection_record(face) for face in faces]
    if predictions is not None:
        records = [{**record, **prediction_record(prediction)}
                   for record, prediction in zip(records, predictions, strict=True)]  # fmt: skip
    return [{**base, "face": index, **record} for index, record in enumerate(records)]


def typed(rows: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """The table: its columns in order, integers as nullable integers."""
    table = pd.DataFrame(rows, columns=COLUMNS)
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
    """Writes the table in the format the output's suffix names (.json: one array), atomically."""
    suffix = output.suffix.lower()
    with atomic_output(output) as temporary:
        if suffix == ".parquet":
            table.to_parquet(temporary, index=False)
        elif suffix == ".csv":
            table.to_csv(temporary, index=False)
        else:
            table.to_json(temporary, orient="records", lines=suffix == ".jsonl", indent=None)
