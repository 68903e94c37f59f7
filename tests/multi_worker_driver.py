"""One worker of the two-process training test (``tests/test_multi_worker.py``); not a test itself.

    python tests/multi_worker_driver.py CONFIG OUT DUMP [--resume] [--park-after N]

``TF_CONFIG`` (set by the test) names the cluster and this worker. The
driver runs ``tools/train.py --config CONFIG --out OUT --set
train.distribute=multi_worker [--resume]``, the user's command, in this
process, and records for the test, in ``DUMP``:

- ``worker<i>.ids.jsonl``: one line per training step, ``[epoch, [image ids]]``,
  the ids this worker's replica trained on (read from the batches the engine
  receives, so it is what was trained, not what was planned);
- ``worker<i>.weights.h5``: every variable of the model (BatchNorm statistics
  included) after ``fit`` returns;
- ``worker<i>.parked``: written when ``--park-after N`` stops the worker after
  epoch N is committed; the worker then waits to be killed (a preemption at
  a known point, so the test does not race the training).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository, installed or not


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("dump")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--park-after", type=int, default=0)
    args = parser.parse_args()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    dump = Path(args.dump)

    import importlib.util

    from detect.train import engine

    spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)

    def train_step(self, batch, _step=engine.Trainer.train_step):
        ids = [bytes(i).decode() for t in self.strategy.experimental_local_results(batch["image_id"])
               for i in t.numpy()]
        with open(dump / f"worker{index}.ids.jsonl", "a") as f:
            f.write(json.dumps([int(self.epoch.numpy()) + 1, ids]) + "\n")
        return _step(self, batch)

    def train_epoch(self, epoch, history, _train_epoch=engine.Trainer._train_epoch):
        _train_epoch(self, epoch, history)
        if epoch + 1 == args.park_after:
            (dump / f"worker{index}.parked").write_text(str(epoch + 1))
            while True:
                time.sleep(1)

    def fit(self, resume=False, _fit=engine.Trainer.fit):
        history = _fit(self, resume)
        self.task.model.save_weights(str(dump / f"worker{index}.weights.h5"))
        return history

    engine.Trainer.train_step = train_step
    engine.Trainer._train_epoch = train_epoch
    engine.Trainer.fit = fit
    argv = ["--config", args.config, "--out", args.out, "--set", "train.distribute=multi_worker", "--quiet"]
    return train_tool.main(argv + ["--resume"] * args.resume)


if __name__ == "__main__":
    from detect.cli import exit_now

    exit_now(main())
