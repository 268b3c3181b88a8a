"""Trains the two-headed age/gender model; configuration in conf/ (Hydra), e.g.

python train.py model.model_name=EfficientNetB3 train.epochs=30
"""

import hydra
from omegaconf import DictConfig

from age_gender.errors import exit_on_user_error


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from age_gender import training  # after Hydra has parsed the command line: TF is slow to load

    training.train(cfg)


if __name__ == "__main__":
    main()
