"""A training never replaces or mixes into what is already there (issue #18, items 4-6).

Each case checks the run directory's files byte for byte (sha256) before
and after a refused training, so "nothing was written" is a fact, not a
message.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from detect.data.shapes import make_shapes
from detect.errors import InputError
from detect.outputs import MARKER, FolderLock
from detect.models.base import TaskBase
from detect.models.protocol import Stage
from detect.train.config import TrainConfig
from detect.train.engine import Trainer
from detect.train.run import train_from_config

ROOT = Path(__file__).resolve().parents[1]


def hashes(folder):
    """{relative path: sha256} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_outputs")
    make_shapes(root / "shapes", "voc", num_images=6, size=64, seed=1)
    path = root / "config.yaml"
    path.write_text(f"name: tiny\ndata:\n  format: voc\n  root: {root / 'shapes'}\n"
                    f"  classes: [circle, square, triangle]\n  image_size: 64\n  max_boxes: 8\n"
                    f"model:\n  backbone: tiny\n  head_width: 8\ntrain:\n  epochs: 1\n  batch_size: 2\n")
    return path


@pytest.fixture(scope="module")
def finished_run(config, tmp_path_factory):
    """A finished one-epoch run, and its files' hashes."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train_from_config(config, out_dir=run, progress=False)
    return run, hashes(run)


def test_a_run_directory_has_the_permissions_of_plain_files_and_folders(finished_run, tmp_path):
    run, _ = finished_run
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    modes = {p.is_dir(): p.stat().st_mode for p in (tmp_path / "file", tmp_path / "folder")}
    assert {str(p.relative_to(run)): p.stat().st_mode for p in run.rglob("*")} == {
        str(p.relative_to(run)): modes[p.is_dir()] for p in run.rglob("*")}


def test_a_finished_run_is_not_replaced_by_training_again(config, finished_run):
    run, before = finished_run
    with pytest.raises(InputError, match="holds a training run already.*--resume"):
        train_from_config(config, ["train.epochs=2"], out_dir=run, progress=False)
    assert hashes(run) == before


@pytest.mark.parametrize("change", [["model.head_width=16"], ["model.backbone=mobilenet_v2"],
                                    ["model.version=v2"]])
def test_resume_with_another_architecture_writes_nothing(config, finished_run, change):
    run, before = finished_run
    with pytest.raises(InputError, match="--resume: the model no longer fits") as error:
        train_from_config(config, change + ["train.epochs=2"], out_dir=run, resume=True, progress=False)
    key = change[0].split("=")[0]
    assert key in str(error.value)  # the message names the key that changed
    assert hashes(run) == before  # config.yaml included: the run still loads as it was
    from detect import Detector

    assert Detector.load(run).config.model.head_width == 8


def test_a_foreign_folder_is_refused_with_or_without_resume(config, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not really a photo")
    for resume in (False, True):
        with pytest.raises(InputError, match="was not created by tools/train.py"):
            train_from_config(config, out_dir=folder, resume=resume, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


def test_a_second_training_is_refused_while_the_first_holds_the_lock(config, finished_run):
    run, before = finished_run
    lock = FolderLock(run, "a training").acquire()  # as a live training holds it
    try:
        with pytest.raises(InputError, match=r"another training \(pid \d+ on .*\) is writing this folder"):
            train_from_config(config, ["train.epochs=2"], out_dir=run, resume=True, progress=False)
    finally:
        lock.release()
    assert hashes(run) == before


def test_resume_continues_an_older_run_without_a_marker(config, finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    (run / MARKER).unlink()  # as runs written before markers existed
    history = train_from_config(config, ["train.epochs=2"], out_dir=run, resume=True, progress=False)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def run_tool(config, out, *extra):
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config),
                             "--out", str(out), "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_trainings_into_one_folder_at_once_exactly_one_refuses(config, tmp_path):
    out = tmp_path / "run"
    procs = [run_tool(config, out, "--set", "train.epochs=1"), run_tool(config, out, "--set", "train.epochs=2")]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    code, _, err = next(r for r in results if r[0] == 2)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    winner = next(i for i, r in enumerate(results) if r[0] == 0)
    # The folder holds the winner's run alone: its config and as many epochs as it trained.
    import json

    history = json.loads((out / "metrics.json").read_text())
    assert len(history["epochs"]) == winner + 1
    assert f"epochs: {winner + 1}" in (out / "config.yaml").read_text()
    assert (out / "checkpoints" / f"epoch_{winner + 1:04d}" / "ckpt.index").exists()


# ---- the stage schedule on resume -----------------------------------------------------

class TwoStageTask(TaskBase):
    def __init__(self, epochs):
        inputs = keras.Input((4,))
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
        self.epochs = epochs

    def forward(self, batch, training=False, mode=None):
        return self.model(batch["image"], training=training)

    def losses(self, outputs, batch):
        return {"loss": tf.reduce_mean(tf.square(outputs - batch["target"]))}

    def stages(self, train_cfg, validation_data=None):
        return [Stage("first", self.epochs[0]), Stage("second", self.epochs[1])]


def data(epoch):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": x, "target": x[:, :2]}).batch(4)


def fit(run, epochs, resume=False):
    cfg = TrainConfig(epochs=sum(epochs), batch_size=4, learning_rate=0.01, warmup_epochs=0)
    trainer = Trainer(TwoStageTask(epochs), cfg, run, data, 2, progress=False, config_snapshot={"model": {}})
    return trainer.fit(resume=resume)


def test_resume_with_a_changed_stage_schedule_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    fit(run, (1, 1))
    before = hashes(run)
    # Epoch 2 was trained in "second"; with 2 + 1 epochs it would be "first" again.
    with pytest.raises(InputError, match="epoch 2 was trained in stage 'second'.*now schedules it in stage 'first'"):
        fit(run, (2, 1), resume=True)
    assert hashes(run) == before
    # Longer last stage: the history still matches; training goes on in "second".
    history = fit(run, (1, 2), resume=True)
    assert [e["stage"] for e in history["epochs"]] == ["first", "second", "second"]
    # Nothing left to train: said, not silent.
    capsys.readouterr()
    fit(run, (1, 2), resume=True)
    assert "nothing to train" in capsys.readouterr().out


def test_a_training_refused_before_its_first_write_leaves_the_folder_reusable(config, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InputError, match="no such run directory or weights file"):
        train_from_config(config, [f"model.init_weights={tmp_path / 'missing'}"], out_dir=run, progress=False)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]  # claimed, nothing else
    from detect.train.rundir import open_run_dir

    with open_run_dir(run, resume=False):  # no --resume needed: nothing to resume
        pass
