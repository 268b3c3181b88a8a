"""Training on several workers started by Ray Train (`workers.engine=ray`).

Ray Train's TensorflowTrainer starts `workers.count` processes on a Ray cluster (a local instance
unless `workers.ray_address` names one) and sets TF_CONFIG for each, so each runs the same
`fit.train` as a worker started by hand: the global batch split across them, the chief (the
first) the one writer of logs, plots and best.keras, each worker its own backup. The data and
output paths are made absolute, since a worker runs in a folder of Ray's. Ray's own records of
the run go to `<train.output_dir>/ray`. A worker lost mid-run fails the run; the same
command started again resumes from the backup every worker has.
"""

import socket
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from age_gender.errors import UserError

PATHS = ("data.csv", "data.root", "data.val_csv", "data.val_root", "train.output_dir")


def train_on_worker(config: dict) -> None:
    """What each Ray worker runs: the training of one worker, whose UserError reaches the driver
    as itself."""
    from age_gender.config import Config
    from age_gender.training import fit

    fit.train(OmegaConf.merge(OmegaConf.structured(Config), config))  # typed, as Hydra's


def train_with_ray(cfg: DictConfig) -> None:
    """Trains on `cfg.workers.count` workers through Ray Train; one line if any worker fails."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.tensorflow import TensorflowTrainer
    except ImportError as error:
        raise UserError("workers.engine=ray needs Ray Train: pip install 'age-gender[scale]'"
                        ) from error  # fmt: skip

    settings = cfg.workers
    if settings.ray_address is None:  # a local instance, whatever RAY_ADDRESS says: one
        # logical CPU per worker's share, and one for Ray's controller
        ray.init(address="local", num_cpus=settings.count * settings.cpus + 1,
                 include_dashboard=False)  # fmt: skip
    else:
        check_reachable(settings.ray_address)
        try:
            ray.init(address=settings.ray_address)
        except (ConnectionError, RuntimeError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise UserError(f"cannot reach the Ray cluster at workers.ray_address="
                            f"{settings.ray_address}: {reason}") from error  # fmt: skip
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in PATHS:  # a worker runs in a folder of Ray's, on this machine or another
        group, name = key.split(".")
        if config[group][name] is not None:
            config[group][name] = str(Path(config[group][name]).resolve())
    records = Path(config["train"]["output_dir"]) / "ray"
    trainer = TensorflowTrainer(
        train_on_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=settings.count,
            use_gpu=settings.gpu,
            resources_per_worker={"CPU": settings.cpus},
        ),  # fmt: skip
        run_config=RunConfig(name="train", storage_path=str(records)),
    )
    try:
        trainer.fit()
    except Exception as error:  # Ray wraps a worker's exception in its own
        raise UserError(f"training on Ray failed: {worker_reason(error)}") from error
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuses in one line a cluster address (host:port, or ray://host:port) nothing answers
    at: Ray itself keeps trying to connect for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():  # "auto", or a form Ray resolves itself
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout).close()
    except OSError as error:
        raise UserError(f"cannot reach the Ray cluster at workers.ray_address={address}: "
                        f"{error.strerror or error}; start it (ray start --head) or name "
                        "another") from error  # fmt: skip


def worker_reason(error: BaseException) -> str:
    """The first worker error's own line (a UserError's whole message), out of Ray's wrapping."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        if isinstance(error, UserError):
            return str(error)
        errors = getattr(error, "worker_failures", None) or {}
        error = next(iter(errors.values()), None) or error.__cause__
    lines = [line for line in str(seen[-1]).splitlines() if line.strip()]
    return lines[-1] if lines else type(seen[-1]).__name__
