"""What training writes each epoch, the backup and the best model: whole or not at all.

Keras' `BackupAndRestore` and `ModelCheckpoint` write in place: a run stopped mid-write leaves
a file that no later run can open, and a disk that fills mid-write leaves h5py unable to close
its file (a segmentation fault at exit). Here each file is written under a temporary name and
renamed, after the room it needs is reserved. A backup's name holds its epoch
(`epoch-0003.weights.h5`: weights and optimizer state after 3 epochs), the newest two are kept,
and a run resumes from the newest that can be read, naming any it passes over.
"""

import json
import math
import re
from pathlib import Path

import keras
import numpy as np

from age_gender.files import atomic_output, check_room, remove_leftovers

HEADROOM = 1.2  # a weights file's size over its variables' bytes (HDF5 and zip overheads)
KEPT = 2  # backups kept: the newest, and the one before it in case the newest is damaged
NAME = re.compile(r"epoch-(\d+)\.weights\.h5")
LEGACY = ("latest.weights.h5", "training_metadata.json")  # Keras' BackupAndRestore, read once


def room_for(model: keras.Model) -> int:
    """Bytes a saved copy of `model` needs at most (weights and optimizer state)."""
    variables = [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
    size = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    return int(size * HEADROOM) + 1_000_000


def backups(folder: Path) -> list[tuple[int, Path]]:
    """The backups in `folder` as (epochs done, path), newest first; a backup written by an
    earlier version (Keras' own callback) counts too."""
    found = [(int(match[1]), path) for path in folder.glob("epoch-*.weights.h5")
             if (match := NAME.fullmatch(path.name))]  # fmt: skip
    weights, state = (folder / name for name in LEGACY)
    if weights.is_file():
        try:
            found.append((int(json.loads(state.read_text())["epoch"]), weights))
        except (OSError, ValueError, KeyError, TypeError):
            print(f"warning: {state} cannot be read; the backup beside it is passed over")
    return sorted(found, reverse=True)


def restore(model: keras.Model, folder: Path, up_to: int | None = None) -> int | None:
    """Loads the newest backup in `folder` (of at most `up_to` epochs) that can be read into
    `model` (weights and optimizer state) and returns its epochs done; None when there is none
    to read (the run starts over)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    remove_leftovers(folder)  # a backup a kill cut short
    found = [(epoch, path) for epoch, path in backups(folder) if up_to is None or epoch <= up_to]
    for epoch, path in found:
        try:
            model.load_weights(path)
        except Exception as error:  # h5py and Keras raise many types for a cut or foreign file
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            print(f"warning: the backup {path} is damaged ({reason}); passing it over")
            continue
        return epoch
    if found:
        print(f"warning: no backup in {folder} can be read: this phase starts over")
    return None


class Backup(keras.callbacks.Callback):
    """Writes the weights and optimizer state after each epoch (`restore` reads them), whole,
    and keeps the newest `KEPT`."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        check_room(self.folder, room_for(self.model), "the training backup")
        with atomic_output(self.folder / f"epoch-{epoch + 1:04d}.weights.h5") as temporary:
            self.model.save_weights(temporary)
        for _, old in backups(self.folder)[KEPT:]:
            old.unlink(missing_ok=True)


class BestModel(keras.callbacks.Callback):
    """Saves the model whenever `monitor` (lower is better) beats every earlier epoch; a worker
    other than the chief saves too (`keep=False`: then deletes it), since a save under several
    workers runs collective operations that every worker must join."""

    def __init__(self, path: Path, monitor: str, best: float = math.inf, keep: bool = True):
        super().__init__()
        self.path, self.monitor, self.best, self.keep = path, monitor, best, keep

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor, math.nan)
        if not value < self.best:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a worker's: its backup folder
        check_room(self.path.parent, room_for(self.model), f"the best model {self.path}")
        with atomic_output(self.path) as temporary:
            self.model.save(temporary)
        if self.keep:
            print(f"\nepoch {epoch + 1}: {self.monitor} {self.best:.4g} -> {value:.4g}, "
                  f"saved {self.path}")  # fmt: skip
        else:
            self.path.unlink()
        self.best = value
