"""Training speed on one worker and on two (a TF_CONFIG cluster on 127.0.0.1): images per second
of the same recipe and global batch.

    python bench/workers.py [--images 512] [--epochs 3] [--model MobileNetV3Small] [--img_size 64]
    python bench/workers.py --gpu_per_worker ...      on a machine with two GPUs: one each

On one machine the workers share its cores (or its GPUs), so two workers are no faster than one:
the ratio measures what synchronising them costs (gradients all-reduced each step, batch norm's
statistics each epoch) and that each worker makes every whole batch (tf.data's DATA sharding)
before keeping its share, not a speed-up. Each rate is (images x (epochs - 1)) over the time
`epochs` runs take beyond a one-epoch run, so start-up and the first epoch's tracing drop out.
The last line is `two_workers_vs_one: X` (images/s on two workers over one worker's).
"""

import sys
import tempfile
import time
from pathlib import Path

from age_gender.errors import ArgumentParser

# The benches share the tests' helpers (tests/support: not in the installed package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import synthetic  # noqa: E402
from support.cluster import finish, start_workers  # noqa: E402


def seconds(overrides: list[str], count: int, folder: Path, gpus: bool) -> float:
    """Wall time of one training on `count` workers (each with its own GPU if `gpus`)."""
    started = time.monotonic()
    one_gpu = (lambda index: {"CUDA_VISIBLE_DEVICES": str(index)}) if gpus else None
    finish(start_workers(overrides, count, folder, one_gpu), timeout=3600)
    return time.monotonic() - started


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="MobileNetV3Small")
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32, help="the global batch")
    parser.add_argument("--gpu_per_worker", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        frame = synthetic.write_disk_dataset(folder / "images", args.images + 64, size=96, seed=0)
        frame[: args.images].to_csv(folder / "train.csv", index=False)
        frame[args.images :].to_csv(folder / "val.csv", index=False)
        base = [
            f"data.csv={folder}/train.csv", f"data.val_csv={folder}/val.csv",
            f"data.root={folder}/images", f"model.model_name={args.model}",
            "model.weights=null", f"model.img_size={args.img_size}",
            f"train.batch_size={args.batch_size}", "train.lr_scheduler=constant",
        ]  # fmt: skip
        rates = {}
        for count in (1, 2):
            times = [
                seconds(
                    [
                        *base,
                        f"train.epochs={epochs}",
                        f"train.output_dir={folder}/run{count}_{epochs}",
                    ],
                    count,
                    folder,
                    args.gpu_per_worker,
                )  # fmt: skip
                for epochs in (1, args.epochs)
            ]
            rates[count] = args.images * (args.epochs - 1) / (times[1] - times[0])
            print(f"workers_{count}_images_per_s: {rates[count]:.1f}")
    print(f"two_workers_vs_one: {rates[2] / rates[1]:.3f}")


if __name__ == "__main__":
    main()
