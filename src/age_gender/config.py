"""The training configuration, typed once: dataclasses registered in Hydra's ConfigStore hold
every key, its type and default (docs/training.md explains each). train.py and
cache_faces.py compose it from the same overrides, so a face cache is cut for the training that
reads it. Hydra refuses a wrong type, an unknown key or a name outside a choice (the Enums);
`check_ranges` refuses what a type cannot say (a range), and training checks the backbone's name
where it is built.

Presets (`conf/experiment/*.yaml`) override several keys at once.
"""

import dataclasses
import enum
import math
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from age_gender.errors import UserError
from age_gender.schema import DEFAULT_MARGIN

CONFIG_DIR = Path(__file__).resolve().parent / "conf"  # config.yaml and the presets
MAX_IMG_SIZE = 2048  # pixels: a larger input is a mistake, and its face cache fills a disk


class Optimizer(str, enum.Enum):
    sgd = "sgd"  # Nesterov, with train.momentum
    adam = "adam"
    adamw = "adamw"  # with train.weight_decay


class Scheduler(str, enum.Enum):
    cosine = "cosine"  # linear warm-up, then cosine decay
    step = "step"  # the original's x0.2 at 25, 50 and 75 % of the epochs
    constant = "constant"
    plateau = "plateau"  # constant, lowered by ReduceLROnPlateau (train.plateau)


class AgeLoss(str, enum.Enum):
    ce = "ce"  # the original's cross-entropy on one-hot ages
    dldl = "dldl"  # label distribution learning: a Gaussian of train.age_sigma years
    mean_variance = "mean_variance"


class Engine(str, enum.Enum):
    local = "local"  # this process: one worker, or one of those TF_CONFIG names (Slurm, Kubernetes)
    ray = "ray"  # Ray Train starts workers.count workers, and sets TF_CONFIG for each


class AgeBalance(str, enum.Enum):
    none = "none"
    lds = "lds"  # inverse smoothed age frequency as the age loss weight


@dataclasses.dataclass
class DataConfig:
    db: str = "imdb"  # names the defaults below: meta/imdb.csv, data/imdb_crop
    csv: str = "meta/${data.db}.csv"  # training labels, as written by create_db.py
    root: str = "data/${data.db}_crop"  # folder the CSV's img_paths are relative to
    val_csv: str | None = None  # validation labels; None holds out val_split of csv
    val_root: str = "${data.root}"
    val_split: float = 0.1
    margin: float = DEFAULT_MARGIN  # crop margin around face boxes, when the CSV has them
    framing_sample: int = 500  # crops without boxes: faces the framing is measured on
    align: bool = False  # crop the square the eyes span (landmarks.py's eye columns)
    upright: bool = False  # turn each box so the eyes are level, where the eye columns say
    licence: str | None = None  # the data's terms, for the model card; None: data.db's


@dataclasses.dataclass
class ModelConfig:
    model_name: str = "EfficientNetB3"  # any image model of keras.applications, or WideResNet*
    img_size: int = 224
    weights: str | None = "imagenet"  # imagenet, packaged (the face networks), None, or a file
    dropout: float = 0.0
    feature_norm: bool = False  # batch norm on the features, trained with the heads
    batchnorm_momentum: float | None = None  # e.g. 0.9 from scratch or on small data


@dataclasses.dataclass
class PlateauConfig:  # Keras' ReduceLROnPlateau on the validation age MAE
    factor: float = 0.5
    patience: int = 3
    min_delta: float = 0.0001  # years of MAE that count as an improvement
    min_lr: float = 0.0


@dataclasses.dataclass
class AugmentConfig:  # the original project's augmentation
    enabled: bool = True
    shift: float = 0.03  # fraction of the image
    scale: float = 0.2  # zoom in 1 +- scale
    rotation: float = 20.0  # degrees
    flip: bool = True
    brightness: float = 0.1  # fraction of 255
    contrast: float = 0.1
    low_resolution: float = 0.0  # probability: shrunk to 25-100 % and enlarged back (small faces)
    blur: float = 0.0  # probability of a Gaussian blur of 0.5-1.5 px
    jpeg: float = 0.0  # probability of a JPEG re-encoding at quality 30-90


@dataclasses.dataclass
class ErasingConfig:
    probability: float = 0.0  # 0 disables random erasing; 0.5 is usual
    area: list[float] = dataclasses.field(default_factory=lambda: [0.02, 0.25])  # of the image
    aspect: list[float] = dataclasses.field(default_factory=lambda: [0.3, 3.3])  # height / width


@dataclasses.dataclass
class TrainConfig:
    optimizer_name: Optimizer = Optimizer.adam
    lr: float = 0.001
    momentum: float = 0.9  # sgd
    weight_decay: float = 0.0001  # adamw
    lr_scheduler: Scheduler = Scheduler.cosine
    warmup_epochs: int = 1
    plateau: PlateauConfig = dataclasses.field(default_factory=PlateauConfig)
    freeze_epochs: int = 0  # train only the two heads for this many epochs first
    trainable_from: str | None = None  # then train from this layer (a name's start) on; None: all
    finetune_lr: float | None = None  # the learning rate after freeze_epochs; None: train.lr
    epochs: int = 30
    batch_size: int = 32
    age_loss: AgeLoss = AgeLoss.ce
    age_sigma: float = 2.0  # years: dldl's label distribution, and lds' smoothing
    age_balance: AgeBalance = AgeBalance.none
    age_balance_power: float = 0.5  # lds: weight = frequency ** -power
    age_loss_weight: float = 1.0
    gender_loss_weight: float = 1.0
    group_balance: str | None = None  # a label column (race), or age_group (decades of age):
    # its groups weigh alike in the gender loss
    group_balance_power: float = 0.5  # weight = group frequency ** -power, mean 1
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    mixup_alpha: float = 0.0  # 0 disables mixup; 0.2 is usual
    random_erasing: ErasingConfig = dataclasses.field(default_factory=ErasingConfig)
    mixed_precision: bool = False  # float16 on GPUs, bfloat16 on CPUs
    jit_compile: bool = False  # XLA
    output_dir: str = "checkpoint/${model.model_name}_${model.img_size}"
    resume: bool = True  # continue an interrupted run in output_dir
    name: str | None = None  # keep the best model in the model store under this name
    replace_model: bool = False  # replace a stored model of that name
    seed: int = 42


@dataclasses.dataclass
class WorkersConfig:
    engine: Engine = Engine.local
    count: int = 2  # ray: training processes, each with its share of every batch
    ray_address: str | None = None  # ray: a running cluster ("auto", "ray://host:10001"); None
    # starts a local instance
    cpus: int = 1  # ray: cores each worker takes from the cluster
    gpu: bool = False  # ray: each worker takes a GPU


@dataclasses.dataclass
class WandbConfig:
    project: str | None = None  # set to log to Weights & Biases (WANDB_MODE=offline works)
    entity: str | None = None


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)
    workers: WorkersConfig = dataclasses.field(default_factory=WorkersConfig)


ConfigStore.instance().store(name="schema", node=Config)


def unquoted_letters(error: Exception, overrides: list[str]) -> str | None:
    """Why Hydra could not parse `overrides` (`error`, its parse error), where one has letters
    outside ASCII in a value not in quotes: its grammar reads them only in quotes, and its
    lexer's error names a token, not what to do."""
    from hydra.errors import OverrideParseException

    if not isinstance(error, OverrideParseException):
        return None
    for override in overrides:
        value = override.partition("=")[2]
        quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
        if not override.isascii() and not quoted:
            return (f"{override}: Hydra reads letters outside ASCII only in quotes, e.g. "
                    "data.csv='/données/labels.csv' (see docs/training.md)")  # fmt: skip
    return None


def compose_config(overrides: list[str]) -> DictConfig:
    """The configuration train.py would run with these overrides, or one line saying why there
    is none (Hydra's own failures are several lines and a traceback)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    removed = [override for override in overrides if override.startswith("~")]
    if removed:
        raise UserError(f"{removed[0]}: keys cannot be removed, the schema needs every one; set "
                        "a value instead (see docs/training.md for the keys)")  # fmt: skip
    schema, absent = OmegaConf.structured(Config), object()
    for override in overrides:
        key = override.lstrip("+").split("=", 1)[0]
        added = (
            override.startswith("+")
            and not key.startswith("hydra.")
            and not (CONFIG_DIR / key).is_dir()
        )  # Hydra's own keys and presets pass
        # fmt: skip
        if added and OmegaConf.select(schema, key, default=absent) is absent:
            raise UserError(f"{override}: the schema has no key {key}, and keys cannot be added "
                            "(see docs/training.md for the keys)")  # fmt: skip
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True)  # `${oops}`: its error now, not mid-run
        return cfg
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        hint = unquoted_letters(error, overrides)
        if hint:
            raise UserError(hint) from error
        reasons = [str(error).strip()]
        if error.__cause__ is not None:  # the value's own error: what is wrong with it
            reasons.append(str(error.__cause__).strip())
        lines = [reason.splitlines()[0] for reason in reasons if reason]
        if getattr(error, "full_key", None):  # OmegaConf's errors name the key on a later line
            lines.insert(0, error.full_key)
        raise UserError(f"{': '.join(lines) or type(error).__name__} (see "
                        "docs/training.md for the keys)") from error  # fmt: skip


def check_ranges(cfg: DictConfig) -> None:
    """Refuses, in one line, values of the right type outside their range."""
    if not str(cfg.train.output_dir).strip():  # Path("") is the current folder
        raise UserError("train.output_dir is empty: give the run's folder, e.g. "
                        "train.output_dir=runs/first")  # fmt: skip
    for key, hint in (
        ("train.group_balance", "a label column (race), age_group, or null for none"),
        ("train.trainable_from", "a layer name's start (block11), or null for every layer"),
    ):  # fmt: skip
        value = OmegaConf.select(cfg, key)
        if value is not None and not str(value).strip():
            raise UserError(f"{key} is empty: give {hint}")
    for key in ("train.epochs", "train.batch_size", "model.img_size", "workers.count",
                "workers.cpus"):  # fmt: skip
        if OmegaConf.select(cfg, key) < 1:
            raise UserError(f"{key} must be a whole number of 1 or more, "
                            f"not {OmegaConf.select(cfg, key)}")  # fmt: skip
    if cfg.model.img_size > MAX_IMG_SIZE:
        raise UserError(f"model.img_size must be {MAX_IMG_SIZE} at most, not {cfg.model.img_size}")
    if cfg.train.freeze_epochs < 0:
        raise UserError("train.freeze_epochs must be a whole number of 0 or more, "
                        f"not {cfg.train.freeze_epochs}")  # fmt: skip
    for key, low, high in (
        ("model.dropout", 0, 1), ("data.margin", 0, math.inf),
        ("train.augment.scale", 0, 1), ("train.augment.shift", 0, 1),
        ("train.augment.rotation", 0, 181), ("train.mixup_alpha", 0, math.inf),
        ("train.warmup_epochs", 0, math.inf), ("model.batchnorm_momentum", 0, 1),
        ("train.momentum", 0, 1), ("train.group_balance_power", 0, math.inf),
    ):  # fmt: skip
        value = OmegaConf.select(cfg, key)
        if value is not None and not low <= value < high:
            interval = f"at least {low}" if high == math.inf else f"in [{low}, {high})"
            raise UserError(f"{key} must be a number {interval}, not {value}")
    for key in ("train.random_erasing.probability", "train.augment.low_resolution",
                "train.augment.blur", "train.augment.jpeg"):  # fmt: skip
        value = OmegaConf.select(cfg, key)
        if not 0 <= value <= 1:
            raise UserError(f"{key} must be a probability in [0, 1], not {value}")
    erasing = cfg.train.random_erasing
    for key, bound in (("area", 1.0), ("aspect", None)):
        values = list(erasing[key])
        low, high = values if len(values) == 2 else (math.nan, math.nan)
        if not 0 < low <= high < math.inf or (bound is not None and high > bound):
            limit = f"0 < low <= high <= {bound}" if bound else "0 < low <= high"
            raise UserError(f"train.random_erasing.{key} must be [low, high] with {limit}, not "
                            f"{values}")  # fmt: skip
    for key in ("train.lr", "train.age_sigma", "data.framing_sample", "train.finetune_lr"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not 0 < value < math.inf:
            raise UserError(f"{key} must be a finite number above 0, not {value}")
