"""Training through train.py: it learns, resumes, distributes, and refuses bad input early."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SMALL_MODEL, user_error
from support import synthetic

from age_gender.config import compose_config
from age_gender.data import dataset
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.models import model
from age_gender.models.card import ModelCard
from age_gender.training import checkpoints, fit

# The learning test trains the small model of keras.applications (so do the freeze test, from
# its backbone's weights, and the input size check); the other tests here train SMALL_MODEL.
MOBILENET = [
    "model.model_name=MobileNetV3Small",
    "model.img_size=32",
    "model.weights=null",
    "model.batchnorm_momentum=0.9",
]


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    """1,200 disk images (radius = age, colour = gender) with a fixed validation split."""
    root = tmp_path_factory.mktemp("disks")
    frame = synthetic.write_disk_dataset(root / "images", 1200, size=64, seed=0)
    frame[:1000].to_csv(root / "train.csv", index=False)
    frame[1000:].to_csv(root / "val.csv", index=False)
    return root


def data_options(root, train="train.csv", val="val.csv"):
    return [
        f"data.csv={root}/{train}",
        f"data.val_csv={root}/{val}",
        f"data.root={root}/images",
    ]


def config(overrides):
    return compose_config(overrides)


@pytest.mark.slow
def test_the_model_learns_age_and_gender(disks, tmp_path, run_script, monkeypatch, capsys):
    output, home = tmp_path / "run", {"AGE_GENDER_HOME": str(tmp_path / "home")}
    command = ["train.py", *data_options(disks), *MOBILENET, "train.epochs=5", "train.lr=0.003",
               f"train.output_dir={output}", "train.name=disks"]  # fmt: skip
    result = run_script(*command, cwd=tmp_path, env=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shuffle=True" not in result.stderr  # no option that Keras ignores (and says so)
    log = pd.read_csv(output / "log.csv")
    validation = pd.read_csv(disks / "val.csv")
    mean_predictor_mae = (validation["ages"] - validation["ages"].mean()).abs().mean()
    best = log.loc[log["val_pred_age_mae"].idxmin()]
    assert best["val_pred_age_mae"] < 0.4 * mean_predictor_mae
    assert best["val_pred_gender_accuracy"] > 0.9
    card = model.model_card(keras.saving.load_model(output / "best.keras"))
    assert card.crop == CropSpec(32, 0.4) and card.backbone == "MobileNetV3Small"
    # Fitted on the validation faces, then recorded; the card says where the model came from.
    assert 0 < card.age_std_scale != 1.0 and card.interval_scale > 0
    assert f"calibrated on 200 validation faces: age_std = {card.age_std_scale:.3f}" in (
        result.stdout
    )
    assert (
        "warning: calibrated on 200 validation faces only: the 90 % interval holds on new "
        "faces to about +-2.1%" in result.stdout
    )
    data, figures = card.provenance["data"], card.provenance["validation"]
    assert data["rows"] == len(pd.read_csv(disks / "train.csv")) and data["db"] == "imdb"
    assert "non-commercial research" in data["licence"]
    assert figures["faces"] == 200 and figures["age_mae"] == pytest.approx(
        best["val_pred_age_mae"], abs=0.05
    )
    assert card.provenance["config"]["train"]["epochs"] == 5 and card.provenance["date"]
    assert (output / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any((output / "tensorboard").rglob("events.out.tfevents*"))
    assert (output / "hydra" / "config.yaml").exists()
    # Kept by name in the store, with its card, a Hugging Face README and the reliability plot.
    kept = tmp_path / "home" / "models" / "disks"
    assert sorted(path.name for path in kept.iterdir()) == [
        "README.md", "card.json", "model.keras", "reliability.png"
    ]  # fmt: skip
    assert ModelCard.parse(json.loads((kept / "card.json").read_text()), "card.json") == card
    assert (output / "age_std_reliability.png").read_bytes()[:4] == b"\x89PNG"
    # The runs below are train.py's own steps in this process (no second TensorFlow start).
    monkeypatch.setenv("AGE_GENDER_HOME", home["AGE_GENDER_HOME"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="a model named disks exists in"):
        fit.train(config(command[1:]))
    # Killed after its last epoch, before its card was finished: started again with a name, the
    # run finishes the card first rather than keeping an uncalibrated model.
    network = keras.saving.load_model(output / "best.keras")
    model.set_card(network, dataclasses.replace(card, provenance={}, age_std_scale=1.0,
                                                interval_scale=None))  # fmt: skip
    network.save(output / "best.keras")
    capsys.readouterr()
    fit.train(config([*command[1:-1], "train.name=finished"]))
    assert "already holds 5 epochs" in capsys.readouterr().out
    kept = json.loads((tmp_path / "home" / "models" / "finished" / "card.json").read_text())
    assert kept["provenance"]["validation"]["faces"] == 200
    assert kept["age_std_scale"] == pytest.approx(card.age_std_scale, rel=1e-3)


# The families README.md promises whose graphs differ (plain ResNet and VGG add nothing to
# these), each by its smallest member: EfficientNet (which failed at epoch 2; EfficientNetV2
# takes its road: scaling inside the model, the same blocks) and ConvNeXt. MobileNetV3 trains in
# the learning and freeze tests, the wide ResNets (the original's is WideResNet16_8) in the
# others (SMALL_MODEL).
BACKBONE_FAMILIES = ["EfficientNetB0", "ConvNeXtTiny"]


@pytest.mark.slow
def test_every_backbone_family_trains_past_its_first_epoch(disks, tmp_path, run_script):
    """EfficientNet used to fail at epoch 2 on a data set of unknown length. One sweep (-m) of
    them all: each run trains in its own folder."""
    rows = pd.read_csv(disks / "train.csv")
    rows[:32].to_csv(tmp_path / "train.csv", index=False)  # two steps an epoch: the bug
    rows[32:48].to_csv(tmp_path / "val.csv", index=False)  # was at the second epoch's start
    data = [f"data.csv={tmp_path}/train.csv", f"data.val_csv={tmp_path}/val.csv",
            f"data.root={disks}/images"]  # fmt: skip
    result = run_script(
        "train.py", "--multirun", f"model.model_name={','.join(BACKBONE_FAMILIES)}",
        "model.img_size=32", "model.weights=null", "train.epochs=2", "train.batch_size=16",
        *data, f"train.output_dir={tmp_path}/runs/${{model.model_name}}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in BACKBONE_FAMILIES:
        log = pd.read_csv(tmp_path / "runs" / name / "log.csv")
        assert log["epoch"].tolist() == [0, 1], name
        assert np.isfinite(log["val_pred_age_mae"]).all(), name
        assert (tmp_path / "runs" / name / "best.keras").stat().st_size > 0, name


def test_a_log_cut_mid_write_or_not_of_train_py_is_read_as_such(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_loss\n0,3.0,2.5\n1,2.0,1.5\n2,1.")  # killed mid-row
    assert fit.finished_epochs(log)["epoch"].tolist() == [0, 1]
    fit.trim_log(log, 2)  # resumed at epoch 3: the next row starts on a line of its own
    assert log.read_text() == "epoch,loss,val_loss\n0,3.0,2.5\n1,2.0,1.5\n"
    log.write_text("epo")  # not even the header whole: Keras writes it anew
    fit.trim_log(log, 0)
    assert fit.finished_epochs(log).empty and not log.exists()
    for text, reason in [("genders,ages,img_paths\n1,30,a.jpg\n", "it has no epoch column"),
                         ("\xff\xfe\x00 not text\n", "it is not a CSV")]:  # fmt: skip
        log.write_bytes(text.encode("latin-1"))
        with pytest.raises(UserError, match=f"log.csv is not a log of train.py \\({reason}"):
            fit.finished_epochs(log)


def test_the_training_step_is_traced_once(disks):
    """A second trace (TensorFlow's, when the first creates variables) costs seconds a phase.
    The heads alone on pooled pixels: the losses and metrics are what is built late."""
    rows = pd.read_csv(disks / "train.csv")[:32]
    data = dataset.make_dataset(rows, disks / "images", CropSpec(32), 16)
    pixels = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(pixels))
    heads = {name: keras.layers.Dense(size, "softmax", name=name)(pooled)
             for name, size in (("pred_gender", 2), ("pred_age", 101))}  # fmt: skip
    network = keras.Model(pixels, heads)
    model.compile_model(network, keras.optimizers.Adam())
    traces, step = [], network.train_step  # runs once per trace, inside the graph being built
    network.train_step = lambda batch: traces.append(batch) or step(batch)
    fit.build_metrics(network, data)
    network.fit(data, epochs=2, verbose=0, shuffle=False)
    assert len(traces) == 1


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_its_weights(disks, tmp_path, capsys):
    output = tmp_path / "run"
    pd.read_csv(disks / "train.csv")[:320].to_csv(tmp_path / "train.csv", index=False)
    pd.read_csv(disks / "val.csv")[:64].to_csv(tmp_path / "val.csv", index=False)
    data = [f"data.csv={tmp_path}/train.csv", f"data.val_csv={tmp_path}/val.csv",
            f"data.root={disks}/images"]  # fmt: skip
    environment = {"WANDB_MODE": "offline", "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}

    def overrides(epochs: int) -> list[str]:
        return [*data, *SMALL_MODEL, f"train.epochs={epochs}", "train.lr_scheduler=constant",
                f"train.output_dir={output}"]  # fmt: skip

    def train(epochs: int, wait: bool = True, *extra: str):
        arguments = [sys.executable, str(REPO / "train.py"), *overrides(epochs), *extra]
        if wait:
            return subprocess.run(
                arguments, cwd=tmp_path, env=environment, capture_output=True, text=True
            )
        return subprocess.Popen(
            arguments, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    # Killed once an epoch is backed up; given more epochs than it lives, so on any machine.
    # The rate is constant: every run below is the same but for train.epochs.
    process, log_path = train(100, wait=False), output / "log.csv"
    deadline = time.monotonic() + 300
    while not (output / "backup" / "epoch-0001.weights.h5").exists():  # logged, then backed up
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = checkpoints.backups(output / "backup")[0][0]  # what the resume starts from
    assert 1 <= done <= len(pd.read_csv(log_path))

    # The backup holds the weights of its epoch: they give the validation loss logged for it.
    cfg = config(data + SMALL_MODEL)
    network = model.build_model("WideResNet10_2", CropSpec(32), None, 0.0, 0.9)
    model.compile_model(network, keras.optimizers.Adam())
    assert checkpoints.restore(network, output / "backup") == done
    rows = pd.read_csv(tmp_path / "val.csv")
    val_data = dataset.make_dataset(rows, disks / "images", CropSpec(32), cfg.train.batch_size)
    loss = network.evaluate(val_data, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(pd.read_csv(log_path)["val_loss"][done - 1], rel=1e-3)

    total = done + 1  # the resume trains one epoch more
    resumed = train(total, True, "wandb.project=age-gender-test")  # it logs the resumed run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {output} at epoch {total} of {total}" in resumed.stdout
    assert pd.read_csv(log_path)["epoch"].tolist() == list(range(total))
    assert list((output / "wandb").glob("offline-run-*"))

    # A backup cut mid-write (a kill, a full disk) is named and passed over for the previous
    # one; the epoch it held is trained again and logged once.
    # In this process: train.py's start is the runs' above.
    backup = output / "backup" / f"epoch-{total:04d}.weights.h5"
    os.truncate(backup, backup.stat().st_size // 2)
    capsys.readouterr()
    fit.train(config(overrides(total + 1)))
    said = capsys.readouterr().out
    assert f"the backup {backup} is damaged" in said
    assert f"resuming {output} at epoch {total} of {total + 1}" in said
    assert sorted(path.name for path in (output / "backup").iterdir()) == [
        f"epoch-{total:04d}.weights.h5",
        f"epoch-{total + 1:04d}.weights.h5",
    ]  # the newest two, whole
    assert pd.read_csv(log_path)["epoch"].tolist() == list(range(total + 1))


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_gives_the_same_step(disks):
    """One step on two CPUs equals one on one CPU; with the backbone frozen only heads move."""
    script = textwrap.dedent(
        f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)
        import keras, pandas as pd
        from pathlib import Path
        from age_gender.data import dataset
        from age_gender.models import model
        from age_gender.faces.crops import CropSpec
        rows = pd.read_csv("{disks}/train.csv")[:16]
        data = dataset.make_dataset(rows, Path("{disks}/images"), CropSpec(32), 16)

        def one_step(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                network = model.build_model("VGG16", CropSpec(32), None)
                model.compile_model(network, keras.optimizers.SGD(0.01))
            loss = network.fit(data, epochs=1, verbose=0).history["loss"][0]
            return loss, float(network.get_layer("pred_age").kernel.numpy().sum())

        single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        # train.freeze_epochs under the mirrored strategy: one step moves the heads only.
        from age_gender.training import fit
        keras.utils.set_random_seed(0)
        with mirrored.scope():
            network = model.build_model("VGG16", CropSpec(32), None)
        before = [layer.get_weights() for layer in network.layers]
        cfg = fit.OmegaConf.create({{"train": {{"optimizer_name": "sgd", "lr": 0.01,
            "momentum": 0.9, "lr_scheduler": "constant", "age_loss_weight": 1.0,
            "gender_loss_weight": 1.0, "jit_compile": False, "age_loss": "dldl",
            "age_sigma": 2.0, "trainable_from": None, "finetune_lr": None}}}})
        fit.compile_for(network, cfg, mirrored, 1, fit.Phase(0, 1, True, "b"))
        network.fit(data, epochs=1, verbose=0)
        moved = sorted(layer.name for layer, old in zip(network.layers, before)
                       if any((a != b).any() for a, b in zip(layer.get_weights(), old)))
        print(json.dumps({{"replicas": mirrored.num_replicas_in_sync, "frozen_moved": moved,
                           "single": single, "mirrored": one_step(mirrored)}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == 2
    assert figures["frozen_moved"] == ["pred_age", "pred_gender"]
    np.testing.assert_allclose(figures["mirrored"], figures["single"], rtol=1e-4)


def test_bad_input_is_one_line_before_training(disks, tmp_path, run_script, monkeypatch):
    result = run_script("train.py", "data.csv=missing.csv", f"data.root={disks}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: missing.csv not found")

    def error(*overrides):
        cfg = config(
            [*data_options(disks), *SMALL_MODEL, f"train.output_dir={tmp_path}/o", *overrides]
        )
        with pytest.raises(UserError) as caught:
            fit.train(cfg)
        return str(caught.value)

    pd.DataFrame({"ages": [1], "img_paths": ["a.jpg"]}).to_csv(tmp_path / "cols.csv")
    assert "lacks the columns genders" in error(f"data.csv={tmp_path}/cols.csv")
    pd.DataFrame({"genders": [1], "ages": [130], "img_paths": ["a.jpg"]}).to_csv(tmp_path / "r.csv")
    assert "ages must hold years in 0..100" in error(f"data.csv={tmp_path}/r.csv")
    assert "data.root=/nowhere does not exist" in error("data.root=/nowhere")
    message = error("model.model_name=ResNet5")
    assert "unknown backbone 'ResNet5'" in message and "ResNet50" in message
    assert "Input size must be at least 32x32" in error("model.model_name=MobileNetV3Small",
                                                              "model.img_size=16")  # fmt: skip
    for key in ("train.optimizer_name", "train.lr_scheduler", "train.age_loss",
                "train.age_balance"):  # fmt: skip
        with pytest.raises(UserError) as caught:  # refused by the schema's choices
            config([f"{key}=rmsprop"])
        assert key in str(caught.value) and "rmsprop" in str(caught.value)
    assert not (tmp_path / "o").exists()  # refused before the model, the data, or a folder
    (tmp_path / "garbage.h5").write_bytes(b"not weights")
    assert "cannot load model.weights=" in error(f"model.weights={tmp_path}/garbage.h5")
    for key, value in [("train.epochs", 0), ("train.epochs", -1), ("model.img_size", 0),
                       ("model.img_size", -5), ("train.batch_size", 0)]:  # fmt: skip
        assert f"{key} must be a whole number of 1 or more, not {value}" in error(f"{key}={value}")
    assert "model.dropout must be a number in [0, 1), not 1.5" in error("model.dropout=1.5")
    assert "train.output_dir is empty: give the run's folder" in error("train.output_dir=''")
    assert "train.group_balance is empty: give a label column" in error("train.group_balance=")
    assert "train.trainable_from is empty: give a layer" in error("train.trainable_from=")
    with pytest.raises(UserError, match="train.group_balance: Interpolation key 'oops' not found"):
        config(["train.group_balance=${oops}"])  # resolved at once: not a traceback mid-run
    assert "data.margin must be a number at least 0" in error("data.margin=-0.2")
    assert "train.mixup_alpha must be a number at least 0" in error("train.mixup_alpha=-1")
    assert "train.warmup_epochs must be a number at least 0" in error("train.warmup_epochs=-1")
    assert "probability must be a probability in [0, 1], not 2" in error(
        "train.random_erasing.probability=2"
    )
    assert "train.augment.jpeg must be a probability" in error("train.augment.jpeg=-0.1")
    assert "train.finetune_lr must be a finite number above 0" in error("train.finetune_lr=0")
    assert "DlibFaceResNet takes model.img_size=103 or more" in error(
        "model.model_name=DlibFaceResNet", "model.weights=packaged", "model.img_size=64"
    )
    assert "data.upright=true needs the faces' eyes in" in error("data.upright=true")
    assert "train.group_balance=race: " in error("train.group_balance=race")
    assert "model name '../x': use up to 64 ASCII letters" in error("train.name=../x")
    assert "model name dex is a built-in model's" in error("train.name=dex")
    with pytest.raises(UserError, match="data.csv=/données/x.csv: Hydra reads letters outside"):
        config(["data.csv=/données/x.csv"])
    with pytest.raises(UserError, match="Key 'nmae' not in"):  # quoted: the real mistake named
        config(["data.csv='/données/x.csv'", "train.nmae=3"])
    (tmp_path / "home").write_text("a file, not a folder")
    monkeypatch.setenv("AGE_GENDER_HOME", str(tmp_path / "home"))
    assert f"the model store {tmp_path}/home/models cannot be written" in error("train.name=x")

    # The backbone is checked before any image is: these images do not even exist.
    missing = pd.DataFrame({"genders": [1] * 40, "ages": [3] * 40, "img_paths": ["no.jpg"] * 40})
    missing.to_csv(tmp_path / "missing.csv", index=False)
    assert "unknown backbone" in error(f"data.csv={tmp_path}/missing.csv", "model.model_name=X")
    assert "has no column race" in error(f"data.csv={tmp_path}/missing.csv",
                                         "train.group_balance=race")  # fmt: skip
    message = error(f"data.val_csv={tmp_path}/missing.csv")
    assert message.startswith("none of the validation images")


@pytest.mark.slow
def test_a_refused_start_leaves_no_output_folder(disks, tmp_path, run_script):
    # Refused at the last check before training (each earlier one: the test above, in-process).
    result = run_script(
        "train.py", *data_options(disks), *SMALL_MODEL, "model.model_name=ResNet5",
        f"train.output_dir={tmp_path}/o", cwd=tmp_path,
    )  # fmt: skip
    user_error(result)
    assert not (tmp_path / "o").exists()
    # The default output folder (checkpoint/<model>_<size>), its parent included; a file named
    # as the image folder.
    (tmp_path / "notes.txt").write_text("not a folder")
    line = user_error(run_script("train.py", "data.root=notes.txt", cwd=tmp_path))
    assert "image folder data.root=notes.txt is not a folder" in line
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.slow
def test_imagenet_weights_offline_say_what_to_do(disks, tmp_path, run_script, offline):
    result = run_script(
        "train.py", *data_options(disks), "model.model_name=MobileNetV3Small", "model.img_size=64",
        f"train.output_dir={tmp_path}/o", cwd=tmp_path, env=offline,
    )  # fmt: skip
    message = user_error(result)
    assert "cannot get the ImageNet weights of MobileNetV3Small" in message
    assert "model.weights=null" in message and "Connection refused" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_freeze_then_train_resumes_in_its_phase(disks, tmp_path, capsys):
    """train.freeze_epochs=1: epoch 1 leaves the backbone as loaded, epoch 2 (a resumed run)
    trains it. train.py's steps in this process: its start is the learning test's."""
    backbone = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    backbone.save_weights(tmp_path / "backbone.weights.h5")
    output = tmp_path / "run"
    pd.read_csv(disks / "train.csv")[:96].to_csv(tmp_path / "small.csv", index=False)
    options = [
        *data_options(disks), f"data.csv={tmp_path}/small.csv",
        "model.model_name=MobileNetV3Small", "model.img_size=32",
        f"model.weights={tmp_path}/backbone.weights.h5", "train.freeze_epochs=1",
        f"train.output_dir={output}",
    ]  # fmt: skip

    def backbone_changes(weights_file) -> list[str]:
        network = model.build_model("MobileNetV3Small", CropSpec(32), None)
        network.load_weights(weights_file)
        return [
            layer.name
            for layer in backbone.layers
            if layer.weights
            and not all(
                np.array_equal(mine, theirs)
                for mine, theirs in zip(
                    network.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
                )
            )
        ]

    fit.train(config([*options, "train.epochs=1"]))
    assert "epochs 1-1: heads only" in capsys.readouterr().out
    assert backbone_changes(output / "backup-heads" / "epoch-0001.weights.h5") == []
    fit.train(config([*options, "train.epochs=2"]))
    assert f"resuming {output} at epoch 2 of 2" in capsys.readouterr().out
    assert len(backbone_changes(output / "backup" / "epoch-0002.weights.h5")) > 10
    assert pd.read_csv(output / "log.csv")["epoch"].tolist() == [0, 1]


@pytest.mark.slow
def test_plateau_lowers_the_learning_rate(disks, tmp_path):
    pd.read_csv(disks / "train.csv")[:96].to_csv(tmp_path / "small.csv", index=False)
    fit.train(config([
        *data_options(disks), f"data.csv={tmp_path}/small.csv", *SMALL_MODEL,
        "train.epochs=3", "train.lr=0.002", "train.lr_scheduler=plateau",
        "train.plateau.patience=0", "train.plateau.factor=0.25", "train.plateau.min_delta=1000",
        f"train.output_dir={tmp_path / 'run'}",
    ]))  # fmt: skip
    # Epoch 1 improves on nothing; epochs 2 and 3 miss min_delta, so each ends with the rate
    # cut by the factor (the log shows the rate an epoch trained with).
    rates = pd.read_csv(tmp_path / "run" / "log.csv")["learning_rate"].tolist()
    np.testing.assert_allclose(rates, [0.002, 0.002, 0.0005], rtol=1e-5)


def test_a_sweep_whose_runs_share_a_folder_or_hold_a_bad_value_is_refused_first(
    tmp_path, run_script
):
    """-m runs one training after another: each must have its own train.output_dir (a later run
    would take an earlier one's epochs as its own), and every run's values are checked before
    the first trains."""
    shared = run_script(
        "train.py", "-m", "train.lr=0.01,0.001", *SMALL_MODEL, f"train.output_dir={tmp_path}/o",
        cwd=tmp_path,
    )  # fmt: skip
    assert user_error(shared) == (
        f"error: the sweep's run train.lr=0.001 would share train.output_dir={tmp_path}/o with "
        "an earlier run (and find that run's epochs there as its own); give each run its own "
        "folder, e.g. 'train.output_dir=runs/${train.lr}'"
    )
    bad = run_script(
        "train.py", "--multirun", "model.dropout=0.1,1.5", *SMALL_MODEL,
        f"train.output_dir={tmp_path}/o/${{model.dropout}}", cwd=tmp_path,
    )  # fmt: skip
    assert "model.dropout must be a number in [0, 1), not 1.5" in user_error(bad)
    named = run_script(
        "train.py", "-m", "train.lr=0.01,0.001", *SMALL_MODEL, "train.name=mine",
        f"train.output_dir={tmp_path}/o/${{train.lr}}", cwd=tmp_path,
    )  # fmt: skip
    assert "every run of the sweep would keep its model as train.name=mine" in user_error(named)
    assert not list(tmp_path.iterdir())  # nothing made, not even Hydra's multirun/


def test_labels_naming_files_by_bytes_that_are_not_utf8_are_one_line(tmp_path, run_script):
    """TensorFlow's input pipeline takes UTF-8 file names only: such a name is refused before
    training, not met as a traceback in the pipeline."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / os.fsdecode(b"ph\xffoto.png")).write_bytes(
        (REPO / "examples" / "astronaut.png").read_bytes()
    )
    (tmp_path / "labels.csv").write_bytes(b"genders,ages,img_paths\n0,30,ph\xffoto.png\n")
    result = run_script(
        "train.py", f"data.csv={tmp_path}/labels.csv", f"data.val_csv={tmp_path}/labels.csv",
        f"data.root={tmp_path}/img", *SMALL_MODEL, f"train.output_dir={tmp_path}/o", cwd=tmp_path,
    )  # fmt: skip
    assert user_error(result).startswith(
        f"error: {tmp_path}/labels.csv: 1 img_paths are not UTF-8 (e.g. row 2, ph\ufffdoto.png); "
        "training reads UTF-8 names only"
    )
    assert not (tmp_path / "o").exists()
