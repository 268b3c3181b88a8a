"""The annotation on a Ray cluster (annotate.py --engine ray), with Ray Data.

The image names become a Ray dataset; tasks decode, detect and crop with the local engine's
`Examiner`, a pool of actors that each load the model once estimates batches of faces (each on
its own GPU share with --num_gpus_per_worker), and the cluster's workers write the table as a
Parquet dataset: a folder of files that pandas, pyarrow, Spark or DuckDB read as one table. The
images and the model must be at the same paths on every node (a shared file system).
"""

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from age_gender.apps import annotation
from age_gender.apps.annotation import Examiner, FaceFinding
from age_gender.data.records import typed
from age_gender.errors import UserError
from age_gender.files import atomic_output
from age_gender.schema import FACE_COLUMNS, IMAGE_COLUMNS, OK

TEXT_COLUMNS = ("file", "status")
IMAGES_PER_TASK = 16


def import_ray():
    """Ray and Ray Data, or one line saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise UserError("--engine ray needs Ray: pip install 'age-gender[scale]'") from error
    return ray


@functools.cache
def examiner(root: str, finding: FaceFinding) -> Examiner:
    """The Ray worker process's one examiner, made for its first batch."""
    return Examiner(Path(root), finding)


def detect(batch: dict[str, np.ndarray], root: str, finding: FaceFinding) -> dict:
    """The rows of a batch of images and a crop for each (black for a row without a face):
    Ray's columns are arrays of one shape."""
    examine = examiner(root, finding)
    rows, crops = [], []
    blank = np.zeros((finding.crop.size, finding.crop.size, 3), np.uint8)
    for name in batch["file"]:
        image_rows, faces = examine(str(name))
        rows += image_rows
        crops += [blank] if faces is None else list(faces)
    table = pd.DataFrame(rows, columns=[*IMAGE_COLUMNS, *FACE_COLUMNS])
    columns = {
        column: table[column].to_numpy(str if column in TEXT_COLUMNS else float)
        for column in table.columns
    }
    return {**columns, "crop": np.stack(crops)}


class Estimate:
    """An actor holding the model: predictions for the faces of a batch of rows."""

    def __init__(self, weight_file: str | None, model_name: str | None, tta: str | None):
        from age_gender.estimators.presets import load_estimator

        self.estimator = load_estimator(model_name or (weight_file and Path(weight_file)))
        self.estimator.set_options(tta=tta)

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        faces = batch["status"] == OK
        predictions = self.estimator.predict_inputs([batch["crop"][faces]])
        rows = pd.DataFrame({column: batch[column] for column in [*IMAGE_COLUMNS, *FACE_COLUMNS]})
        return typed(annotation.with_predictions(rows.to_dict("records"), predictions))


def annotate(
    names: list[str],
    root: Path,
    output: Path,
    finding: FaceFinding,
    weight_file: Path | None,
    model_name: str | None,
    batch_size: int,
    num_gpus_per_worker: float,
    address: str | None,
    tta: str | None = None,
) -> None:
    """Annotates the images `names` (under `root`) on the Ray cluster at `address` (None: a
    local instance on this machine's cores) into the Parquet dataset `output`."""
    ray = import_ray()
    if finding.crop is None:
        raise UserError("--engine ray runs this project's models (.keras, HDF5, ONNX, TFLite, "
                        "DEX); use the local engine for dlib-models")  # fmt: skip
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        estimators = max(1, int(gpus // num_gpus_per_worker)) if num_gpus_per_worker else 1
        model = str(weight_file.resolve()) if weight_file else None
        estimated = (
            ray.data.from_items([{"file": name} for name in names])
            .map_batches(
                detect,
                fn_kwargs={"root": str(root.resolve()), "finding": finding},
                batch_size=IMAGES_PER_TASK,
                num_cpus=1,
            )
            .map_batches(
                Estimate,
                fn_constructor_kwargs={
                    "weight_file": model,
                    "model_name": model_name,
                    "tta": tta,
                },  # fmt: skip
                batch_size=batch_size,
                concurrency=estimators,
                num_cpus=0 if num_gpus_per_worker else 1,
                num_gpus=num_gpus_per_worker or None,
            )
        )
        with atomic_output(output) as temporary:
            estimated.write_parquet(str(temporary.resolve()))
    finally:
        if started_here:
            ray.shutdown()
