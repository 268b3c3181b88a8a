"""What training writes each epoch, the backup and the best model: whole or not at all.

Keras' `BackupAndRestore` and `ModelCheckpoint` write in place: a run stopped mid-write leaves
a file that no later run can open, and a disk that fills mid-write leaves h5py unable to close
its file (a segmentation fault at exit). Here each file is written under a temporary name and
renamed, after the room it needs is reserved; the previous backup is kept, and a damaged
backup is named and passed over for the previous one (or, without one, the phase starts over).
"""

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from age_gender.files import atomic_output, check_room

HEADROOM = 1.2  # a weights file's size over its variables' bytes (HDF5 and zip overheads)


def room_for(model: keras.Model) -> int:
    """Bytes a saved copy of `model` needs at most (weights and optimizer state)."""
    variables = [*model.weights, *(model.optimizer.variables if model.optimizer else [])]
    size = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    return int(size * HEADROOM) + 1_000_000


class BestModel(keras.callbacks.Callback):
    """Saves the model whenever `monitor` (lower is better) beats every earlier epoch."""

    def __init__(self, path: Path, monitor: str, best: float = math.inf):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor, math.nan)
        if not value < self.best:
            return
        check_room(self.path.parent, room_for(self.model), f"the best model {self.path}")
        with atomic_output(self.path) as temporary:
            self.model.save(temporary)
        print(f"\nepoch {epoch + 1}: {self.monitor} {self.best:.4g} -> {value:.4g}, "
              f"saved {self.path}")  # fmt: skip
        self.best = value


WEIGHTS, STATE = "latest.weights.h5", "training_metadata.json"  # Keras' names
PREVIOUS = "previous."


class Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (once an epoch) with atomic writes and a fallback.

    `on_restore(epoch)` is called with the epoch a run resumes at (`start`, the phase's first,
    when it starts over), so the epoch log can drop what the restored weights never saw.
    """

    def __init__(
        self, folder: Path, start: int = 0, on_restore: Callable[[int], None] | None = None
    ):
        super().__init__(str(folder), delete_checkpoint=False)
        self.folder = folder
        self.start = start
        self.on_restore = on_restore

    def on_train_begin(self, logs=None) -> None:
        for prefix in ("", PREVIOUS):
            weights = self.folder / f"{prefix}{WEIGHTS}"
            if not weights.exists():
                continue
            try:
                epoch = json.loads((self.folder / f"{prefix}{STATE}").read_text())["epoch"]
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                self.model.load_weights(weights)
            except (OSError, ValueError, KeyError, TypeError) as error:
                print(f"warning: the backup {weights} is damaged ({error}); passing it over")
                continue
            self.model._initial_epoch = epoch  # how Keras' own callback resumes fit()
            if prefix:
                print(f"resuming from the previous backup, {weights}, after epoch {epoch}")
            if self.on_restore is not None:
                self.on_restore(epoch)
            return
        if any(self.folder.glob("*.weights.h5")):
            print(f"warning: no backup in {self.folder} can be read: this phase starts over")
            if self.on_restore is not None:
                self.on_restore(self.start)

    def _save_model(self) -> None:  # Keras' hook, called once an epoch
        self.folder.mkdir(parents=True, exist_ok=True)
        check_room(self.folder, room_for(self.model), "the training backup")
        weights, state = self.folder / WEIGHTS, self.folder / STATE
        incoming = [self.folder / f"incoming.{WEIGHTS}", self.folder / f"incoming.{STATE}"]
        with atomic_output(incoming[0]) as temporary:
            self.model.save_weights(temporary)
        with atomic_output(incoming[1]) as temporary:
            temporary.write_text(json.dumps({"epoch": self._current_epoch, "batch": 0}))
        for path in (weights, state):  # the last whole backup becomes the previous one
            if path.exists():
                os.replace(path, path.with_name(PREVIOUS + path.name))
        for source, path in zip(incoming, (weights, state), strict=True):
            os.replace(source, path)
