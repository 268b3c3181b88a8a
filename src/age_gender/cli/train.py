"""Trains the two-headed age/gender model; configuration in src/age_gender/conf/ (Hydra), e.g.

python train.py model.model_name=EfficientNetB3 train.epochs=30
python train.py +experiment=utkface_cpu data.root=data/UTKFace
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from age_gender.errors import UserError, exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"  # package data: age_gender/conf/


@exit_on_user_error
def check_output_dir(overrides: list[str]) -> None:
    """Refuses, in one line, overrides Hydra cannot compose (an unknown key, a bad value) and an
    output folder that cannot be written, before Hydra writes its files there (Hydra's own
    failures are several lines and a traceback). Command lines with Hydra's flags (--help,
    --multirun) are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from age_gender.files import check_output_folder

    if any(argument.startswith("-") for argument in overrides):
        return
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            output_dir = compose("config", overrides=overrides).train.output_dir
    except (HydraException, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{first} (see README.md, train.py, for the keys)") from error
    check_output_folder(Path(output_dir))


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
@exit_on_user_error
def train(cfg: DictConfig) -> None:
    from age_gender import training  # after Hydra has parsed the command line: TF is slow to load

    training.train(cfg)


def main() -> None:
    """The command line (Hydra's overrides and flags, from sys.argv) checked, then trained."""
    check_output_dir(sys.argv[1:])
    train()


if __name__ == "__main__":
    main()
