"""Two worker processes on loopback train, are killed, resume and agree (``train.distribute: multi_worker``).

What a user with two machines does, on one machine: the same command and
the same ``--out`` on both, ``TF_CONFIG`` naming both workers. Each worker
is ``tests/multi_worker_driver.py`` (``train_from_config`` plus a record of
what it trained on). The run is parked after epoch 1 is committed, both are
killed with SIGKILL, then both resume; the checks are on what the workers
did, read from their records, and on the chief's run directory. Last,
the run is resumed with worker 1's ``--out`` on another folder (a
filesystem that is not shared): both stop with one clear line.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from detect.data.shapes import make_shapes

DRIVER = Path(__file__).with_name("multi_worker_driver.py")
WORKERS = 2
GLOBAL_BATCH = 8
TRAIN_IMAGES = 32  # a multiple of the global batch: every image is trained on once per epoch
PHASE_SECONDS = 150


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(config, outs, dump, scratch, phase, resume=False, park_after=0):
    """Starts the workers, worker ``i`` with ``--out outs[i]``, on fresh ports; their output goes to DUMP."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(WORKERS)]
    procs = []
    for index in range(WORKERS):
        env = dict(os.environ, TMPDIR=str(scratch), CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        command = [sys.executable, str(DRIVER), str(config), str(outs[index]), str(dump)]
        command += ["--resume"] * resume + ["--park-after", str(park_after)]
        log = open(dump / f"worker{index}.{phase}.log", "w")
        procs.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    return procs


def _log(dump, index, phase):
    return (dump / f"worker{index}.{phase}.log").read_text()


def _wait(procs, until, dump, phase):
    """Waits for ``until()``; fails, with the workers' output, on a timeout or a worker that ended early."""
    deadline = time.monotonic() + PHASE_SECONDS
    while not until():
        ended = [(i, p.returncode) for i, (p, _) in enumerate(procs) if p.poll() is not None]
        if time.monotonic() > deadline or (ended and phase == "first"):  # the first phase ends parked
            _kill(procs)
            logs = "\n".join(f"--- worker {i} ---\n{_log(dump, i, phase)[-3000:]}" for i in range(WORKERS))
            pytest.fail(f"{phase} phase: {'timed out' if not ended else f'ended early {ended}'}\n{logs}")
        time.sleep(0.5)


def _kill(procs):
    for proc, log in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()


def _weights(path):
    with h5py.File(path, "r") as f:
        found = {}
        f.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw") / "shapes"
    make_shapes(root, "voc", num_images=TRAIN_IMAGES + 8, size=64, seed=3, val_fraction=0.2)
    path = root.parent / "config.yaml"
    path.write_text(f"name: mw\ndata:\n  format: voc\n  root: {root}\n  classes: [circle, square, triangle]\n"
                    f"  image_size: 64\n  max_boxes: 8\nmodel:\n  backbone: tiny\n  head_width: 8\n"
                    f"train:\n  epochs: 2\n  batch_size: {GLOBAL_BATCH}\n  warmup_epochs: 0\n")
    return path


def test_two_workers_killed_and_resumed_agree_and_cover_every_image(config, tmp_path):
    """Kill and resume; then a resume whose workers see different run directories stops with a clear error."""
    out, dump, scratch = tmp_path / "run", tmp_path / "dump", tmp_path / "scratch"
    dump.mkdir()
    scratch.mkdir()

    procs = _start(config, [out] * WORKERS, dump, scratch, "first", park_after=1)
    _wait(procs, lambda: all((dump / f"worker{i}.parked").exists() for i in range(WORKERS)), dump, "first")
    _kill(procs)  # a preemption: both machines gone at once, after epoch 1 was committed
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epoch"] == 1

    procs = _start(config, [out] * WORKERS, dump, scratch, "resume", resume=True)
    _wait(procs, lambda: all(p.poll() is not None for p, _ in procs), dump, "resume")
    _kill(procs)
    logs = [_log(dump, i, "resume") for i in range(WORKERS)]
    for index, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, f"worker {index} exit {proc.returncode}:\n{logs[index][-3000:]}"
        assert "resumed from epoch 1" in logs[index], logs[index][-3000:]

    # Every variable, BatchNorm statistics included, is the same on both workers.
    chief, other = _weights(dump / "worker0.weights.h5"), _weights(dump / "worker1.weights.h5")
    assert chief.keys() == other.keys() and any("moving" in k or "vars" in k for k in chief)
    differing = [k for k in chief if not np.array_equal(chief[k], other[k])]
    assert not differing, f"{len(differing)} of {len(chief)} tensors differ between the workers, e.g. {differing[:3]}"

    # Each epoch: every training image once, over both workers; each step half the global batch per worker.
    steps = {}
    for index in range(WORKERS):
        for line in (dump / f"worker{index}.ids.jsonl").read_text().splitlines():
            epoch, ids = json.loads(line)
            assert len(ids) == GLOBAL_BATCH // WORKERS
            steps.setdefault(epoch, Counter()).update(ids)
    train_ids = {line for line in (config.parent / "shapes" / "ImageSets" / "Main" / "train.txt").read_text().split()}
    assert sorted(steps) == [1, 2]
    for epoch, seen in steps.items():
        assert set(seen) == train_ids and set(seen.values()) == {1}, \
            f"epoch {epoch}: {len(train_ids - set(seen))} images never seen, " \
            f"{sum(1 for c in seen.values() if c > 1)} seen twice"

    history = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert (out / "last.weights.h5").exists() and (out / "config.yaml").exists()
    # The first phase's non-chief was killed with its scratch folder; the resumed one removed it and its own.
    left = sorted(p.name for p in scratch.glob(".detect-worker.*"))
    assert not left, f"scratch left behind: {left}"

    # --out on a folder that is not shared: worker 1 finds no checkpoint where the chief finds epoch 2.
    procs = _start(config, [out, tmp_path / "elsewhere"], dump, scratch, "unshared", resume=True)
    _wait(procs, lambda: all(p.poll() is not None for p, _ in procs), dump, "unshared")
    _kill(procs)
    for index, (proc, _) in enumerate(procs):
        log = _log(dump, index, "unshared")
        assert proc.returncode == 2, log[-3000:]
        assert "the workers found different checkpoints" in log and "[2, 0]" in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]

