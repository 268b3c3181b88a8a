"""Trains the two-headed age/gender model; configuration: Hydra, the schema in config.py, e.g.

python train.py model.model_name=EfficientNetB3 train.epochs=30
python train.py +experiment=utkface_cpu data.root=data/UTKFace
python train.py -m model.model_name=EfficientNetB0,ConvNeXtTiny     one run after the other
"""

import contextlib
import itertools
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from age_gender.config import CONFIG_DIR, Engine, check_ranges, compose_config, unquoted_letters
from age_gender.errors import UserError, exit_on_user_error

START_ROOM = 1_000_000  # bytes: Hydra's files and the log, written before any check can run
MULTIRUN = {"-m", "--multirun"}


def sweep_runs(overrides: list[str]) -> list[list[str]]:
    """The overrides of each run of a sweep (`-m a=1,2 b=3,4`: four runs), as Hydra's basic
    sweeper makes them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        hint = unquoted_letters(error, overrides)
        if hint:
            raise UserError(hint) from error
        reason = str(error).splitlines()[0]
        raise UserError(f"{reason} (see docs/training.md for the keys)") from error
    choices: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UserError(f"{override.input_line}: sweep a list of values (a=1,2), a range "
                            "or a choice; an interval has no values to run")  # fmt: skip
    return [list(run) for run in itertools.product(*choices.values())]


@exit_on_user_error
def check_output_dir(arguments: list[str]) -> Path | None:
    """Refuses, in one line, overrides Hydra cannot compose (an unknown key, a bad value) and an
    output folder that cannot be written, before Hydra writes its files there (Hydra's own
    failures are several lines and a traceback); with -m, those of every run of the sweep, and
    runs that would share a train.output_dir (the later one would take the earlier one's epochs
    as its own: go on from them, or stop) or a train.name. Returns the output folder of a single
    run; None for a sweep, and for Hydra's other flags (--help, --cfg), left to Hydra."""
    from age_gender.files import check_output_folder, check_room

    flags = {argument for argument in arguments if argument.startswith("-")}
    if not flags <= MULTIRUN:
        return None
    if flags and os.environ.get("TF_CONFIG"):
        raise UserError("-m runs one training after another in one process, and several "
                        "workers set up their collectives once a process: start each run's "
                        "workers anew, or sweep on one worker (without TF_CONFIG)")  # fmt: skip
    overrides = [argument for argument in arguments if argument not in MULTIRUN]
    hydra_dir = "hydra.sweep.dir=" if flags else "hydra.run.dir="
    moved = [item.split("=", 1)[1] for item in overrides if item.startswith(hydra_dir)]
    if flags and not moved:
        moved = ["multirun"]  # Hydra's files of a sweep: multirun/<date>/<time>/<run>/
    folders: dict[Path, list[str]] = {}
    names: dict[str, list[str]] = {}
    for run in sweep_runs(overrides) if flags else [overrides]:
        cfg = compose_config(run)
        check_ranges(cfg)  # before Hydra makes the output folder
        if cfg.train.name is not None and names.setdefault(cfg.train.name, run) is not run:
            raise UserError(f"every run of the sweep would keep its model as "
                            f"train.name={cfg.train.name}, each replacing the one before; name "
                            "each run, e.g. 'train.name=mine_${model.model_name}'")  # fmt: skip
        output_dir = Path(cfg.train.output_dir)
        for folder in [output_dir, *moved]:  # Hydra writes its own files there
            check_output_folder(Path(folder))
            check_room(Path(folder), START_ROOM, "training")
        earlier = folders.setdefault(output_dir.resolve(), run)
        if earlier is not run:
            differ = [item for item in run if item not in earlier] or run
            key = differ[0].split("=", 1)[0].lstrip("+")
            raise UserError(
                f"the sweep's run {' '.join(differ)} would share train.output_dir={output_dir} "
                "with an earlier run (and find that run's epochs there as its own); give each "
                f"run its own folder, e.g. 'train.output_dir=runs/${{{key}}}'"
            )
    return None if flags else output_dir


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
@exit_on_user_error
def train(cfg: DictConfig) -> None:
    # Imported after Hydra has parsed the command line: TensorFlow and Ray are slow to load.
    if cfg.workers.engine == Engine.ray:
        from age_gender.training.workers import train_with_ray

        train_with_ray(cfg)
        return
    from age_gender.training import fit

    fit.train(cfg)


def main() -> None:
    """The command line (Hydra's overrides and flags, from sys.argv) checked, then trained; a
    run refused at its start leaves none of the folders it made (`checkpoint/` included)."""
    from age_gender.files import output_folder

    output_dir = check_output_dir(sys.argv[1:])
    with output_folder(output_dir) if output_dir else contextlib.nullcontext():
        train()


if __name__ == "__main__":
    main()
