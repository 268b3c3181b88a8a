"""Trains the two-headed age/gender model; configuration: Hydra, the schema in config.py, e.g.

python train.py model.model_name=EfficientNetB3 train.epochs=30
python train.py +experiment=utkface_cpu data.root=data/UTKFace
"""

import contextlib
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from age_gender.config import CONFIG_DIR, check_ranges, compose_config
from age_gender.errors import exit_on_user_error

START_ROOM = 1_000_000  # bytes: Hydra's files and the log, written before any check can run


@exit_on_user_error
def check_output_dir(overrides: list[str]) -> Path | None:
    """Refuses, in one line, overrides Hydra cannot compose (an unknown key, a bad value) and an
    output folder that cannot be written, before Hydra writes its files there (Hydra's own
    failures are several lines and a traceback). Command lines with Hydra's flags (--help,
    --multirun) are left to Hydra (None)."""
    from age_gender.files import check_output_folder, check_room

    if any(argument.startswith("-") for argument in overrides):
        return None
    cfg = compose_config(overrides)
    check_ranges(cfg)  # before Hydra makes the output folder
    moved = [item.split("=", 1)[1] for item in overrides if item.startswith("hydra.run.dir=")]
    for folder in [cfg.train.output_dir, *moved]:  # Hydra writes its own files there
        check_output_folder(Path(folder))
        check_room(Path(folder), START_ROOM, "training")
    return Path(cfg.train.output_dir)


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
@exit_on_user_error
def train(cfg: DictConfig) -> None:
    from age_gender import training  # after Hydra has parsed the command line: TF is slow to load

    training.train(cfg)


def main() -> None:
    """The command line (Hydra's overrides and flags, from sys.argv) checked, then trained; a
    run refused at its start leaves none of the folders it made (`checkpoint/` included)."""
    from age_gender.files import output_folder

    output_dir = check_output_dir(sys.argv[1:])
    with output_folder(output_dir) if output_dir else contextlib.nullcontext():
        train()


if __name__ == "__main__":
    main()
