"""The fit loop: data, strategy, precision, schedule, checkpoints, logs, resume and curves.

Everything a user can get wrong (labels, image folder, backbone, image size, weights) is checked
before the first step, so a run fails in seconds, not hours in.
"""

import contextlib
import dataclasses
import datetime
import io
import json
import math
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from age_gender.config import AgeBalance, Optimizer, Scheduler, TrainConfig, check_ranges
from age_gender.data import dataset, labels
from age_gender.errors import UserError
from age_gender.estimators.base import decode
from age_gender.estimators.presets import PRESETS
from age_gender.faces import framing
from age_gender.faces.crops import CropSpec, is_box
from age_gender.files import atomic_output, remove_leftovers
from age_gender.models import backbones, calibration, model, store
from age_gender.models.card import ModelCard
from age_gender.plots import plot_learning_curves, plot_reliability
from age_gender.schema import AGE, EYE_COLUMNS, GENDER, HEADS
from age_gender.training import checkpoints
from age_gender.training.checkpoints import BestModel

BEST_MODEL = "best.keras"
LOG = "log.csv"
CURVES = "learning_curves.png"
RELIABILITY = "age_std_reliability.png"
MONITOR = f"val_{AGE}_mae"


def check_config(cfg: DictConfig) -> None:
    """Refuses impossible settings in one line, before any image is read or model built (the
    types were checked by the schema, `config.Config`)."""
    check_ranges(cfg)
    if cfg.train.name is not None:
        store.check_free(cfg.train.name, cfg.train.replace_model, taken=PRESETS)
    name = cfg.model.model_name
    backbones.family(name).check_size(name, cfg.model.img_size)  # keras' check as it builds


def tf_config() -> dict:
    """TF_CONFIG, checked: JSON naming a cluster and this process's task in it."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError as error:
        raise UserError(f"TF_CONFIG is not JSON ({error}): see docs/training.md, "
                        "'Several machines'") from error  # fmt: skip
    cluster = config.get("cluster", {}) if isinstance(config, dict) else None
    task = config.get("task", {}) if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError('TF_CONFIG must be {"cluster": {...}, "task": {...}}')
    kind, index = task.get("type", "chief"), task.get("index", 0)
    if cluster and not (isinstance(index, int) and 0 <= index < len(cluster.get(kind, []))):
        raise UserError(f"TF_CONFIG's task {kind} {index} is not one of the cluster's "
                        f"{len(cluster.get(kind, []))} {kind} tasks")  # fmt: skip
    return config


def choose_strategy() -> tf.distribute.Strategy:
    """Several workers in TF_CONFIG: multi-worker; several GPUs: mirrored; else the default.

    Call it before any other TensorFlow work: a multi-worker strategy must configure the
    collective ops at program start-up.
    """
    if sum(len(tasks) for tasks in tf_config().get("cluster", {}).values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_index() -> int | None:
    """None on the chief (or alone), else this worker's number: workers other than the chief
    train alike but keep their files (the backup for resuming) apart and write no results."""
    task, cluster = tf_config().get("task", {}), tf_config().get("cluster", {})
    index = int(task.get("index", 0))
    if task.get("type", "chief") == "chief" or ("chief" not in cluster and index == 0):
        return None
    return index


def across_workers(network: keras.Model) -> None:
    """Readies `network`, its losses and metrics built (`build_metrics`, in the strategy's
    scope), for `fit` on several workers, past keras-team/keras#20585 (Keras 3 up to 3.15 at
    least): `fit` inside `strategy.scope()` then trains as on one machine.

    - Keras' `fit` would build the model again from a batch of its distributed dataset,
      averaged across workers with `strategy.reduce`, which cannot take a nested batch (images
      and a dict of labels). The model forgets the strategy it was built under, which is all
      that makes Keras ask for that build; `fit` then takes the strategy from the scope it
      runs in, as Keras' `distribute_strategy` falls back to.
    - Keras averages each step's logs with `reduce("MEAN", value, axis=0)`, which a scalar has
      no axis for: the steps return one value per worker instead."""
    for name in ("train_step", "test_step"):
        step = getattr(type(network), name).__get__(network)  # the class's: once, each phase

        def per_worker(batch, step=step):
            return {key: tf.reshape(value, [1]) for key, value in step(batch).items()}

        setattr(network, name, per_worker)
    network._distribute_strategy = None


def gathered(strategy: tf.distribute.Strategy, values: list[float]) -> list[list[float]]:
    """Every replica's `values` (one per worker on CPUs), the chief's first (a collective:
    every worker calls it)."""
    context = tf.distribute.get_replica_context  # the replica's, inside `run`
    mine = tf.constant([values], tf.float64)
    everyone = strategy.run(lambda: context().all_gather(mine, axis=0))
    return strategy.experimental_local_results(everyone)[0].numpy().tolist()


def check_same_data(strategy: tf.distribute.Strategy, steps: int, val_data) -> None:
    """Refuses, on every worker alike, workers that would run different numbers of steps (their
    copies of the data differ, or some images could not be read on one machine): each would
    wait forever for the others' next step."""
    mine = [steps, int(val_data.cardinality())]
    everyone = gathered(strategy, mine)
    if any(theirs != everyone[0] for theirs in everyone):
        counts = ", ".join(f"{int(a)}+{int(b)}" for a, b in everyone)
        raise UserError(
            f"the workers read different data (training+validation batches: {counts}): give "
            "every worker the same files at the same paths"
        )


def restore_alike(network: keras.Model, folder: Path, strategy: tf.distribute.Strategy):
    """Restores every worker to the same epoch, the newest all of them have a backup of: a kill
    can land after some workers wrote an epoch's backup and before others did, and workers that
    start from different epochs would wait for each other forever."""
    newest = max((epoch for epoch, _ in checkpoints.backups(folder)), default=0)
    agreed = int(min(epoch for (epoch,) in gathered(strategy, [newest])))
    while True:
        restored = checkpoints.restore(network, folder, up_to=agreed) or 0
        everyone = [int(epoch) for (epoch,) in gathered(strategy, [restored])]
        if len(set(everyone)) == 1:
            return restored or None
        if min(everyone) == 0:  # one passed over a damaged backup for none: no common start
            raise UserError(
                f"the workers' backups have no epoch in common (epochs {everyone}); remove "
                f"{folder} on every worker to start this phase over"
            )
        agreed = min(everyone)


class ShareStatistics(keras.callbacks.Callback):
    """Averages batch norm's moving statistics across workers after each epoch's training,
    before it is validated and saved: the gradients are all-reduced, but each worker updates
    those statistics from its own share of the batch, so the workers' models would drift apart
    and the chief's would hold half the data's statistics."""

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy

    def on_test_begin(self, logs: dict | None = None) -> None:
        moving = [variable for variable in self.model.non_trainable_variables
                  if variable.name in ("moving_mean", "moving_variance")]  # fmt: skip
        values = [variable.value for variable in moving]
        context = tf.distribute.get_replica_context  # the replica's, inside `run`
        averaged = self.strategy.run(lambda: context().all_reduce("MEAN", values))
        for variable, value in zip(moving, averaged, strict=True):
            variable.assign(self.strategy.experimental_local_results(value)[0])


def discard_failed_start(output_dir: Path) -> None:
    """Removes what Hydra wrote into a new output folder for a run that failed its checks."""
    shutil.rmtree(output_dir / "hydra", ignore_errors=True)
    (output_dir / "train.log").unlink(missing_ok=True)
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def read_splits(data: DictConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation labels: `data.val_csv`, else a seeded `data.val_split` share."""
    for key in ("root", "val_root"):
        if not Path(data[key]).is_dir():
            what = "is not a folder" if Path(data[key]).exists() else "does not exist"
            raise UserError(f"image folder data.{key}={data[key]} {what}")
    train = labels.utf8_only(labels.read_labels_csv(Path(data.csv)), Path(data.csv))
    if data.val_csv:
        validation = Path(data.val_csv)
        return train, labels.utf8_only(labels.read_labels_csv(validation), validation)
    if not 0 < data.val_split < 1:
        raise UserError("data.val_split must be between 0 and 1 when data.val_csv is not set")
    validation = train.sample(frac=data.val_split, random_state=seed)
    if validation.empty or len(validation) == len(train):
        raise UserError(f"{data.csv} has too few rows to hold out data.val_split={data.val_split}")
    return train.drop(validation.index).reset_index(drop=True), validation.reset_index(drop=True)


def training_config(cfg: DictConfig) -> TrainConfig:
    """`cfg.train` as its dataclass: the input pipeline reads it per image, where a DictConfig's
    attribute lookups would cost more than the crop."""
    return OmegaConf.to_object(cfg.train)


def learning_rate(train: DictConfig, steps_per_epoch: int, epochs: int):
    """`cosine`: linear warm-up then cosine decay; `step`: the original's x0.2 at 25/50/75 %;
    `constant`, and `plateau` (constant, lowered by the ReduceLROnPlateau callback), over
    `epochs` epochs."""
    total = epochs * steps_per_epoch
    if train.lr_scheduler == Scheduler.cosine:
        warmup = min(train.warmup_epochs * steps_per_epoch, total - 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(total - warmup, 1), warmup_target=train.lr, warmup_steps=warmup
        )
    if train.lr_scheduler == Scheduler.step:
        boundaries = [int(total * fraction) for fraction in (0.25, 0.5, 0.75)]
        values = [train.lr * factor for factor in (1.0, 0.2, 0.04, 0.008)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return train.lr


def make_optimizer(
    train: DictConfig, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    rate = learning_rate(train, steps_per_epoch, epochs)
    if train.optimizer_name == Optimizer.sgd:
        return keras.optimizers.SGD(rate, momentum=train.momentum, nesterov=True)
    if train.optimizer_name == Optimizer.adamw:
        return keras.optimizers.AdamW(rate, weight_decay=train.weight_decay)
    return keras.optimizers.Adam(rate)


def finished_epochs(log_path: Path) -> pd.DataFrame:
    """The epochs a previous run of this output folder logged (empty when there is none); a
    last line a kill cut mid-write is no epoch (`trim_log` drops it). A file of another
    program's under the log's name is one line."""
    return read_log(log_path)[0]


def read_log(log_path: Path) -> tuple[pd.DataFrame, bool]:
    """`finished_epochs`, and whether the file ends in a line a kill cut mid-write."""
    text = log_path.read_bytes() if log_path.exists() else b""
    whole = text[: text.rfind(b"\n") + 1]
    cut = len(whole) < len(text)
    if not whole.strip():
        return pd.DataFrame(), cut
    try:
        logged = pd.read_csv(io.BytesIO(whole))
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        logged, reason = None, f"it is not a CSV: {type(error).__name__}"
    else:
        reason = "it has no epoch column"
    if logged is None or "epoch" not in logged.columns:
        raise UserError(f"{log_path} is not a log of train.py ({reason}): choose another "
                        "train.output_dir, or move the file")  # fmt: skip
    return logged, cut


def trim_log(log_path: Path, epoch: int) -> None:
    """Drops the logged epochs from `epoch` on (a run resumed from an earlier backup trains
    them again, and the log should hold each epoch once) and a last line cut mid-write, which
    the next row would be appended to."""
    logged, cut = read_log(log_path)
    if not len(logged) and cut:  # not even the header whole: Keras writes it anew
        log_path.unlink()
    elif len(logged) and ((logged["epoch"] >= epoch).any() or cut):
        with atomic_output(log_path) as temporary:
            logged[logged["epoch"] < epoch].to_csv(temporary, index=False)


def wandb_callbacks(cfg: DictConfig, output_dir: Path) -> list[keras.callbacks.Callback]:
    """Weights & Biases logging when `wandb.project` is set (WANDB_MODE=offline works too)."""
    if not cfg.wandb.project:
        return []
    try:
        import wandb
        from wandb.integration.keras import WandbMetricsLogger
    except ImportError as error:
        raise UserError(
            "wandb.project is set but wandb is not installed: pip install wandb"
        ) from error
    run_id_file = output_dir / "wandb_run_id"
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else uuid.uuid4().hex[:8]
    run_id_file.write_text(run_id)
    wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        dir=str(output_dir),
        id=run_id,
        resume="allow",
    )
    return [WandbMetricsLogger()]


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs [start, end) trained with the backbone frozen (heads only) or not; each phase
    keeps its own backup, so an interrupted run resumes in the phase it was in."""

    start: int
    end: int
    frozen: bool
    backup: str


def phases(train: DictConfig) -> list[Phase]:
    """Heads only for `train.freeze_epochs` epochs (Age-Gender-Pred's schedule), then all."""
    frozen = min(train.freeze_epochs, train.epochs)
    candidates = [
        Phase(0, frozen, True, "backup-heads"),
        Phase(frozen, train.epochs, False, "backup"),
    ]
    return [phase for phase in candidates if phase.end > phase.start]


def set_trainable(network: keras.Model, frozen: bool, trainable_from: str | None = None) -> None:
    """Frozen: only the two heads (and `model.feature_norm`) train. Else every layer from the
    first whose name starts with `trainable_from` on (all when None): a network trained on
    faces keeps its early stages as they are, and costs no gradients there. Untrainable
    BatchNorm runs in inference mode."""
    names = [layer.name for layer in network.layers]
    start = 0
    if trainable_from is not None:
        start = next((i for i, name in enumerate(names) if name.startswith(trainable_from)), None)
        if start is None:
            raise UserError(f"train.trainable_from={trainable_from}: no layer of "
                            f"{network.name} has a name starting so")  # fmt: skip
    for index, layer in enumerate(network.layers):
        head = layer.name in (*HEADS, model.FEATURE_NORM)
        layer.trainable = head or (not frozen and index >= start)


def compile_for(
    network: keras.Model, cfg: DictConfig, strategy, steps_per_epoch: int, phase: Phase
) -> None:
    """Compiles `network` for `phase`: its trainable layers, a schedule over its epochs."""
    set_trainable(network, phase.frozen, cfg.train.trainable_from)
    # Heads alone need no warm-up (it shields a backbone from fresh heads' first gradients);
    # the phase after them may run at its own rate.
    rates = OmegaConf.merge(cfg.train, {"warmup_epochs": 0} if phase.frozen else {})
    if not phase.frozen and cfg.train.finetune_lr is not None:
        rates = OmegaConf.merge(rates, {"lr": cfg.train.finetune_lr})
    with strategy.scope():
        model.compile_model(
            network,
            make_optimizer(rates, steps_per_epoch, phase.end - phase.start),
            cfg.train.age_loss_weight,
            cfg.train.gender_loss_weight,
            cfg.train.jit_compile,
            cfg.train.age_loss,
            cfg.train.age_sigma,
        )


def build_metrics(network: keras.Model, data: tf.data.Dataset) -> None:
    """Creates the compiled losses' and metrics' variables before `fit`. Without a distribution
    strategy Keras leaves them to the first trace of the training step, and TensorFlow traces a
    function whose first trace created variables a second time (3-10 s a phase on 2 cores);
    with one, `fit` cannot build them from several workers' batches (`across_workers`)."""
    network._symbolic_build(data_batch=data.element_spec)  # Keras' own (private; in Keras 3)


def with_eyes(rows: pd.DataFrame, csv: str, name: str) -> pd.DataFrame:
    """The rows whose eyes landmarks.py found (a warning counts the others); refuses a CSV
    without eye columns."""
    if not set(EYE_COLUMNS) <= set(rows.columns):
        raise UserError(
            f"data.align=true needs eye positions in {csv}: run landmarks.py on it first"
        )
    found = np.isfinite(labels.eye_values(rows)).all(axis=1)
    if not found.all():
        print(f"warning: skipping {(~found).sum()} of {len(rows)} {name} faces without eyes found")
    return rows[found].reset_index(drop=True)


def crop_spec(cfg: DictConfig, rows: pd.DataFrame) -> CropSpec:
    """The crop the model trains on and records: `data.margin` around faces with boxes (or the
    eyes' square, aligned); for pre-cropped faces (no boxes: the whole image is the face), where
    the detector's box sits in them, so that inference from a detected box crops what training
    saw."""
    size, margin, upright = cfg.model.img_size, cfg.data.margin, bool(cfg.data.upright)
    boxed = is_box(labels.face_boxes(rows))
    if cfg.data.align or boxed.all():
        return CropSpec(size, margin, aligned=bool(cfg.data.align), upright=upright)
    if boxed.any():
        print(
            f"{boxed.sum()} of {len(rows)} training faces have boxes and the rest are "
            f"whole-image crops; the model records data.margin={margin}, the boxes' framing"
        )
        return CropSpec(size, margin, upright=upright)
    sample = min(cfg.data.framing_sample, len(rows))
    measured = framing.framing_of_crops(rows, Path(cfg.data.root), sample, cfg.train.seed)
    if measured is None:
        print(
            "warning: the face detector finds too few faces in these crops to measure their "
            f"framing; the model records data.margin={margin}"
        )
        return CropSpec(size, margin, upright=upright)
    print(
        f"framing: the detector's box is found in {measured.found} of {sample} "
        f"crops; the crop is that box with margin {measured.margin:.3f}, offset "
        f"{measured.offset} (box size varies by {measured.spread:.1%})"
    )
    return CropSpec(size, measured.margin, measured.offset, upright=upright)


def age_weights(cfg: DictConfig, rows: pd.DataFrame):
    """Per-face age loss weights for `train.age_balance=lds`, else None (all 1)."""
    if cfg.train.age_balance == AgeBalance.none:
        return None
    return dataset.balanced_age_weights(
        rows["ages"].to_numpy(), cfg.train.age_sigma, cfg.train.age_balance_power
    )


def check_group_balance(cfg: DictConfig, rows: pd.DataFrame, csv: str) -> None:
    """`train.group_balance` must be a label column of `csv`, or age_group."""
    column = cfg.train.group_balance
    if column is not None and column not in (*rows.columns, labels.AGE_GROUP):
        raise UserError(f"train.group_balance={column}: {csv} has no column {column} (its "
                        f"columns: {', '.join(map(str, rows.columns))}; or age_group)")  # fmt: skip


def gender_weights(cfg: DictConfig, rows: pd.DataFrame):
    """Per-face gender loss weights for `train.group_balance`, else None."""
    if cfg.train.group_balance is None:
        return None
    groups = labels.group_column(rows, cfg.train.group_balance)
    return dataset.balanced_group_weights(groups, cfg.train.group_balance_power)


def prepare(cfg: DictConfig, strategy: tf.distribute.Strategy):
    """The model, the training and validation data sets, the validation rows and the number of
    training rows; checks the data."""
    keras.utils.set_random_seed(cfg.train.seed)
    train_rows, val_rows = read_splits(cfg.data, cfg.train.seed)
    check_group_balance(cfg, train_rows, cfg.data.csv)
    crop = crop_spec(cfg, train_rows)
    if crop.aligned:
        train_rows = with_eyes(train_rows, cfg.data.csv, "training")
        val_rows = with_eyes(val_rows, cfg.data.val_csv or cfg.data.csv, "validation")
    elif crop.upright and not set(EYE_COLUMNS) <= set(train_rows.columns):
        raise UserError(f"data.upright=true needs the faces' eyes in {cfg.data.csv}: run "
                        "composite_faces.py or landmarks.py on it first")  # fmt: skip
    gpu = bool(tf.config.list_logical_devices("GPU"))
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(mixed if cfg.train.mixed_precision else "float32")
    with strategy.scope():  # before reading every image: a wrong size or weights fail fast
        network = model.build_model(
            cfg.model.model_name, crop, cfg.model.weights, cfg.model.dropout,
            cfg.model.batchnorm_momentum, feature_norm=cfg.model.feature_norm,
        )  # fmt: skip
    set_trainable(network, False, cfg.train.trainable_from)  # a wrong layer name fails here
    train_rows = dataset.drop_unreadable(train_rows, Path(cfg.data.root), "training images")
    val_rows = dataset.drop_unreadable(val_rows, Path(cfg.data.val_root), "validation images")
    if len(train_rows) < cfg.train.batch_size:
        raise UserError(
            f"only {len(train_rows)} readable training images, fewer than "
            f"train.batch_size={cfg.train.batch_size}"
        )
    if val_rows.empty:
        raise UserError(f"none of the validation images in {cfg.data.val_root} can be read")
    train_data = dataset.make_dataset(
        train_rows, Path(cfg.data.root), crop, cfg.train.batch_size, training_config(cfg),
        shuffle=True, seed=cfg.train.seed, age_weights=age_weights(cfg, train_rows),
        gender_weights=gender_weights(cfg, train_rows),
    )  # fmt: skip
    val_data = dataset.make_dataset(val_rows, Path(cfg.data.val_root), crop, cfg.train.batch_size)
    return network, train_data, val_data, val_rows, len(train_rows)


def best_logged(log_path: Path) -> float:
    """The best (lowest) monitored value of the epochs logged so far."""
    logged = finished_epochs(log_path).get(MONITOR, pd.Series(dtype=float))
    return logged.min() if logged.notna().any() else math.inf


def result_callbacks(
    cfg: DictConfig, output_dir: Path, best: float
) -> list[keras.callbacks.Callback]:
    """What the chief writes: the best model so far (better than `best`), the epoch log,
    TensorBoard, W&B."""
    return [
        BestModel(output_dir / BEST_MODEL, MONITOR, best),
        keras.callbacks.CSVLogger(str(output_dir / LOG), append=True),
        keras.callbacks.TensorBoard(str(output_dir / "tensorboard")),
        *wandb_callbacks(cfg, output_dir),
    ]


def train(cfg: DictConfig) -> Path:
    """Trains as `cfg` says and returns the path of the best model (lowest validation age MAE)."""
    output_dir = Path(cfg.train.output_dir)
    log_path, best_path = output_dir / LOG, output_dir / BEST_MODEL
    previous = finished_epochs(log_path)
    try:
        strategy = choose_strategy()
        worker, trained = worker_index(), False
        several = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        logged = len(previous)
        if several:  # the chief's log decides for all: a worker's folder may not be the chief's
            logged = int(gathered(strategy, [logged])[0][0])
        check_config(cfg)
        if logged and not cfg.train.resume:
            raise UserError(
                f"{output_dir} holds a run of {logged} epochs; pass train.resume=true to "
                "continue it or choose another train.output_dir"
            )
        if logged >= cfg.train.epochs:
            print(f"{output_dir} already holds {logged} epochs; raise train.epochs to go on")
            if worker is None:
                plot_learning_curves(previous, output_dir / CURVES)
                card = None
                if best_path.exists():  # read once: for the check below and for the store
                    card = model.model_card(keras.saving.load_model(best_path, compile=False))
                if card is not None and not card.provenance:  # killed before its card was done
                    _, _, val_data, val_rows, train_count = prepare(cfg, strategy)
                    card = finish_card(best_path, val_data, val_rows, cfg, train_count)
                keep_by_name(cfg, best_path, card)
            return best_path
        network, train_data, val_data, val_rows, train_count = prepare(cfg, strategy)
        steps_per_epoch = train_count // cfg.train.batch_size
    except UserError:
        if previous.empty:
            discard_failed_start(output_dir)
        raise
    if several:
        check_same_data(strategy, steps_per_epoch, val_data)

    output_dir.mkdir(parents=True, exist_ok=True)
    if worker is None:  # the chief's folder: another machine's process ids mean nothing here
        remove_leftovers(output_dir, [LOG, BEST_MODEL, CURVES])  # a killed run's partial ones
    for phase in phases(cfg.train):
        if phase.frozen:
            print(f"epochs {phase.start + 1}-{phase.end}: heads only (train.freeze_epochs)")
        compile_for(network, cfg, strategy, steps_per_epoch, phase)
        backup_dir = output_dir / phase.backup / ("" if worker is None else f"worker-{worker}")
        with strategy.scope():  # the optimizer's state is built there, as the model's
            restored = (restore_alike(network, backup_dir, strategy) if several
                        else checkpoints.restore(network, backup_dir))  # fmt: skip
        start = phase.start if restored is None else restored
        if start >= phase.end:  # this phase was done before
            continue
        if start > 0 and not trained:  # the first epoch this run trains is a later one
            print(f"resuming {output_dir} at epoch {start + 1} of {cfg.train.epochs}")
        trained = True
        if worker is None:  # the epochs the restored weights never saw are trained again
            trim_log(log_path, start)
        callbacks = [ShareStatistics(strategy)] if several else []
        if cfg.train.lr_scheduler == Scheduler.plateau:
            plateau = keras.callbacks.ReduceLROnPlateau(
                MONITOR, mode="min", verbose=1, **cfg.train.plateau
            )
            callbacks.append(plateau)
        best = best_logged(log_path) if worker is None else math.inf
        if several:  # every worker saves when the chief does: a save's collectives must match
            best = gathered(strategy, [best])[0][0]
        if worker is None:
            callbacks += result_callbacks(cfg, output_dir, best)
        else:  # saved as the chief saves, kept by none
            callbacks.append(BestModel(backup_dir / BEST_MODEL, MONITOR, best, keep=False))
        # Last: an epoch is backed up once logged and saved, so a resume never skips its row.
        callbacks.append(checkpoints.Backup(backup_dir))
        with strategy.scope():  # where fit would create them under a strategy
            build_metrics(network, train_data)
        if several:
            across_workers(network)
        try:
            with strategy.scope() if several else contextlib.nullcontext():
                network.fit(
                    train_data,
                    validation_data=val_data,
                    initial_epoch=start,
                    epochs=phase.end,
                    callbacks=callbacks,
                    shuffle=False,  # tf.data shuffles; Keras would warn that it ignores its own
                )
        except UserError:  # from a callback (no room for a backup), mid-way in Keras' progress line
            print()
            raise
        except tf.errors.UnavailableError as error:  # another worker stopped (killed, crashed)
            reason = str(error).splitlines()[0][:200]
            raise UserError(
                f"a worker of the cluster was lost ({reason}); start every worker again: they "
                "resume from the newest backup they all have"
            ) from error
        except tf.errors.InvalidArgumentError as error:  # the pipeline's ValueError, wrapped
            vanished = re.search(r"cannot read ([^\n]+)", str(error))
            if vanished is None:
                raise
            raise UserError(f"{vanished.group(1).strip()}: an image changed or vanished after "
                            "the start-up check; restore it (or drop its row) and run again, "
                            "which resumes") from error  # fmt: skip
    if worker is None:
        card = finish_card(best_path, val_data, val_rows, cfg, train_count)
        plot_learning_curves(finished_epochs(log_path), output_dir / CURVES)
        print(f"best model: {best_path}\nlearning curves: {output_dir / CURVES}")
        keep_by_name(cfg, best_path, card)
    return best_path


def validation_figures(network: keras.Model, val_data) -> pd.DataFrame:
    """Each validation face's true age and gender (-1: unknown), predicted age, P(male) and the
    age softmax's raw spread (`decode` without a card), in the validation rows' order."""
    parts = []
    for images, truth, *_ in val_data:
        gender, age = (head.numpy() for head in network(images, training=False))
        known = truth[GENDER].numpy()
        predictions = decode(gender, age)
        parts.append(pd.DataFrame({
            "true_age": truth[AGE].numpy().argmax(axis=1),
            "true_gender": np.where(known.sum(axis=1) > 0, known.argmax(axis=1), -1),
            "age": [p.age for p in predictions],
            "spread": [p.age_std for p in predictions],
            "male": [p.male_probability for p in predictions],
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def summary(figures: pd.DataFrame) -> dict[str, float]:
    """Age MAE and gender accuracy (of the faces whose gender is known) of `figures`."""
    known = figures[figures["true_gender"] >= 0]
    return {
        "faces": len(figures),
        "age_mae": float((figures["age"] - figures["true_age"]).abs().mean()),
        "gender_accuracy": float(((known["male"] >= 0.5) == (known["true_gender"] == 1)).mean())
        if len(known) else None,
    }  # fmt: skip


def finish_card(
    best_path: Path, val_data, val_rows: pd.DataFrame, cfg: DictConfig, train_rows: int
) -> ModelCard:
    """Writes into the best model its card's calibration (`calibration.calibrate` on the
    validation faces, without test-time augmentation) and provenance: the training data and its
    licence, the configuration, the commit, the date and the validation figures, by group where
    the labels have groups (UTKFace's race); plots the calibrated spread's reliability beside
    it. Returns the card."""
    network = keras.saving.load_model(best_path)
    figures = validation_figures(network, val_data)
    errors = (figures["age"] - figures["true_age"]).abs().to_numpy()
    try:
        level = model.model_card(network).interval_level
        fields, held_out = calibration.calibrate(
            errors, figures["spread"].to_numpy(), level, cfg.train.seed
        )
    except ValueError as error:
        print(f"warning: age_std left uncalibrated and no interval: {error}")
        fields, held_out = {"interval_scale": None}, {}
    validation = {**summary(figures), **held_out}
    groups = [column for column in GROUP_COLUMNS if column in val_rows.columns]
    for column in groups:
        named = val_rows[column].fillna("(none)").astype(str).to_numpy()
        validation[f"by_{column}"] = {name: summary(figures[named == name])
                                      for name in sorted(set(named))}  # fmt: skip
    card = dataclasses.replace(model.model_card(network), **fields, provenance={
        "data": {"db": cfg.data.db, "csv": cfg.data.csv, "rows": train_rows,
                 "val_csv": cfg.data.val_csv,
                 "licence": cfg.data.licence or f"{labels.licence(cfg.data.db)} (data.db="
                 f"{cfg.data.db}'s; set data.licence when the data is another)"},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "commit": source_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "validation": validation,
    })  # fmt: skip
    model.set_card(network, card)
    with atomic_output(best_path) as temporary:
        network.save(temporary)
    stds, lows, highs = calibration.calibrated(figures["age"], figures["spread"], card)
    calibrated = figures.assign(age_std=stds, age_low=lows, age_high=highs)
    plot_reliability(calibrated, best_path.parent / RELIABILITY)
    warning = calibration.few_faces_warning(card.interval_level, len(figures))
    if held_out and warning:
        print(warning)
    if held_out:
        print(f"calibrated on {len(figures)} validation faces: age_std = "
              f"{fields['age_std_scale']:.3f} x spread^{fields['age_std_power']:.2f}, 90 % "
              f"interval +-{fields['interval_scale']:.2f} age_std; on the half not fitted: "
              + "; ".join(f"{label}: {held_out[key]:.1%}"
                          for key, label in calibration.COVERAGE_LABELS.items()))  # fmt: skip
    return card


def keep_by_name(cfg: DictConfig, best_path: Path, card: ModelCard | None = None) -> None:
    """Keeps the best model in the store under `train.name`, if given (also when a finished
    run is started again with a name)."""
    if cfg.train.name is None:
        return
    card = card or model.model_card(keras.saving.load_model(best_path, compile=False))
    kept = store.keep(cfg.train.name, best_path, card, best_path.parent / RELIABILITY)
    print(f"kept as {cfg.train.name} in {kept} (--model {cfg.train.name})")


GROUP_COLUMNS = ("race",)  # label columns validation figures are broken down by


def source_commit() -> str | None:
    """The commit of this package's source, `+dirty` when it has changes; None outside git."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True,
                               timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")
