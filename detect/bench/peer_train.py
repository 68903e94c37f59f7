"""``tools/benchmark.py train --peer yolov3-tf2``: our YOLOv3 training step beside yolov3-tf2's.

yolov3-tf2 (github.com/zzh8829/yolov3-tf2, MIT) is the most used TensorFlow 2
YOLOv3. Nothing of it is copied here: the user points ``--peer-path`` at a
checkout (or an unpacked PyPI sdist) holding its ``yolov3_tf2`` package, and
this module imports the peer's own ``YoloV3``, ``YoloLoss`` and
``transform_targets`` from there, unchanged: under Keras 3 they build and
train as they are, in float32 and in bfloat16 (``LeakyReLU(alpha=...)`` only
warns; Keras' loss wrapper hands the peer's loss float32 outputs, as Keras 2's
mixed precision did).

What each side runs is what its training script runs:

- ours: the engine's step (``Trainer``'s epoch loop), the config's model,
  loss and optimizer (``configs/yolov3_coco.yaml``: Darknet-53, three
  scales, SGD with momentum and an L2 penalty); target assignment happens
  inside the step;
- the peer: ``train.py --mode fit`` (its default): ``YoloV3(size,
  training=True, classes=80)``, one ``YoloLoss`` per scale, ``Adam``,
  ``model.compile`` and ``model.fit`` (Keras resolves ``jit_compile`` as it
  does for the peer's own script); its targets come from its own
  ``transform_targets``, which its script runs in the tf.data pipeline,
  so here before timing.

Both get the same images and boxes (COCO-like: a Poisson(7) number of boxes
per image, log-uniform sides from 6 to 400 px, 80 classes), the same batch
size and precision; rounds alternate in one process.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

PEERS = ("yolov3-tf2",)
PEER_PACKAGE = "yolov3_tf2"
PEER_CLASSES = 80  # the peer's COCO head, and our config's
PEER_CONFIG = "configs/yolov3_coco.yaml"


def load_yolov3_tf2(path):
    """(the peer's ``models`` module, its ``dataset`` module) from a checkout at ``path``.

    Raises:
      InputError: ``path`` holds no ``yolov3_tf2`` package, or it does not import.
    """
    from detect.errors import InputError

    root = Path(path).expanduser().resolve()
    if not (root / PEER_PACKAGE / "models.py").is_file():
        raise InputError("benchmark.py", f"--peer-path {path}: no {PEER_PACKAGE}/models.py there (a checkout of "
                         "github.com/zzh8829/yolov3-tf2 or an unpacked 'pip download yolov3-tf2' sdist)")
    sys.path.insert(0, str(root))
    try:
        from yolov3_tf2 import dataset, models
    except ImportError as error:
        raise InputError("benchmark.py", f"--peer-path {path}: the peer does not import: {error}") from None
    finally:
        sys.path.remove(str(root))
    return models, dataset


def coco_like_boxes(seed, batch, size, max_boxes, num_classes=PEER_CLASSES):
    """Random boxes like COCO's, in pixels of a ``size`` x ``size`` input (sides from 6 to 400 px, or below ``size``).

    Returns:
      boxes [batch, max_boxes, 4] float32 xyxy pixels, zero-padded;
      classes [batch, max_boxes] int32 in [0, num_classes), -1 padded;
      num_boxes [batch] int32 (at least 1, at most ``max_boxes``).
    """
    rng = np.random.default_rng(seed)
    boxes = np.zeros((batch, max_boxes, 4), np.float32)
    classes = np.full((batch, max_boxes), -1, np.int32)
    num_boxes = np.clip(rng.poisson(7, batch), 1, max_boxes).astype(np.int32)
    for i, n in enumerate(num_boxes):
        wh = np.exp(rng.uniform(np.log(6), np.log(min(400, size - 1)), (n, 2)))
        xy = rng.uniform(0, 1, (n, 2)) * (size - wh)
        boxes[i, :n] = np.concatenate([xy, xy + wh], 1)
        classes[i, :n] = rng.integers(0, num_classes, n)
    return boxes, classes, num_boxes


def our_batch(images, boxes, classes, num_boxes):
    """Our pipeline's batch dict (``detect.data.pipeline``) for letterboxed square images."""
    import tensorflow as tf

    batch, size = images.shape[0], images.shape[1]
    unit_scale, no_padding = tf.ones([2]), tf.zeros([2])  # transform: [scale_y, scale_x, pad_y, pad_x]
    return {"image": tf.constant(images), "image_hw": tf.constant([[size, size]] * batch, tf.int32),
            "boxes": tf.constant(boxes), "classes": tf.constant(classes),
            "ignore": tf.zeros(classes.shape, tf.bool), "num_boxes": tf.constant(num_boxes),
            "image_id": tf.constant([f"{i}" for i in range(batch)]),
            "transform": tf.tile(tf.concat([unit_scale, no_padding], 0)[None], [batch, 1]),
            "original_size": tf.constant([[size, size]] * batch, tf.int32)}


def peer_labels(boxes, classes, size):
    """The peer's ``y_train`` [B, max_boxes, 5]: (x1, y1, x2, y2) / size and the class, zero rows as padding
    (its ``transform_targets_for_output`` skips rows whose x2 is 0)."""
    labels = np.zeros(boxes.shape[:2] + (5,), np.float32)
    valid = classes >= 0
    labels[..., :4] = np.where(valid[..., None], boxes / size, 0)
    labels[..., 4] = np.where(valid, classes, 0)
    return labels


def bench_train_peer(peer, peer_path, batch_size, steps, rounds, precision, overrides=()):
    """Our engine's YOLOv3 step against the peer's ``model.fit`` step, alternating rounds of ``steps`` batches.

    Prints cold (first round: tracing) and warm (median, best) ms per step
    of both and the ratio peer / ours (> 1: ours is faster). Returns 0.
    """
    import keras
    import tensorflow as tf

    from detect.bench.timing import alternating_rounds
    from detect.bench.train import engine_round_fn
    from detect.config import keras_policy
    from detect.models.registry import build_task
    from detect.train.experiment import load_experiment
    from detect.train.optimizer import set_precision

    models, dataset = load_yolov3_tf2(peer_path)
    config = load_experiment(PEER_CONFIG, [*overrides, f"train.mixed_precision={precision}",
                                           "train.distribute=default", f"train.batch_size={batch_size}"])
    size, max_boxes = config.data.image_size, config.data.max_boxes
    rng = np.random.default_rng(0)
    rounds_data = []
    for k in range(steps):
        images = rng.random((batch_size, size, size, 3), dtype=np.float32)
        boxes, classes, num_boxes = coco_like_boxes(k, batch_size, size, max_boxes)
        rounds_data.append((images, boxes, classes, num_boxes))

    set_precision(precision)
    task = build_task(config.model, PEER_CLASSES)
    ours_batches = [our_batch(*data) for data in rounds_data]
    ours_ds = tf.data.Dataset.from_tensors(ours_batches[0])
    for batch in ours_batches[1:]:
        ours_ds = ours_ds.concatenate(tf.data.Dataset.from_tensors(batch))
    ours_round = engine_round_fn(task, config, ours_ds, steps, batch_size,
                                 tempfile.mkdtemp(prefix="detect-bench-peer-"))

    keras.mixed_precision.set_global_policy(keras_policy(precision))
    peer_model = models.YoloV3(size, training=True, classes=PEER_CLASSES)
    losses = [models.YoloLoss(models.yolo_anchors[mask], classes=PEER_CLASSES) for mask in models.yolo_anchor_masks]
    peer_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses)
    peer_x, peer_y = [], []
    for images, boxes, classes, _ in rounds_data:
        targets = dataset.transform_targets(tf.constant(peer_labels(boxes, classes, size)), models.yolo_anchors,
                                            models.yolo_anchor_masks, size)
        peer_x.append(images)
        peer_y.append(tuple(t.numpy() for t in targets))
    peer_ds = tf.data.Dataset.from_tensors((peer_x[0], peer_y[0]))
    for x, y in zip(peer_x[1:], peer_y[1:]):
        peer_ds = peer_ds.concatenate(tf.data.Dataset.from_tensors((x, y)))

    def peer_round():
        peer_model.fit(peer_ds, epochs=1, verbose=0)

    print(f"YOLOv3 (Darknet-53) at {size} px, batch {batch_size}, {precision}, {steps} steps per round, "
          f"{rounds} rounds; ours {task.model.count_params() / 1e6:.2f} M parameters, {peer} "
          f"{peer_model.count_params() / 1e6:.2f} M; {peer} from {peer_path}, unchanged; "
          f"its jit_compile: {peer_model.jit_compile}", flush=True)
    rounds_of = {"ours": ours_round, peer: peer_round}
    cold, timings = alternating_rounds(rounds_of, rounds)
    median = {k: float(np.median(v)) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    labels = {"ours": "ours (engine step, configs/yolov3_coco.yaml)", peer: f"{peer} (model.fit, its train.py default)"}
    for key, label in labels.items():
        print(f"{label}: cold {cold[key]:.1f} s (tracing), warm {median[key] / steps * 1e3:.0f} ms/step median, "
              f"{best[key] / steps * 1e3:.0f} ms/step best ({steps * batch_size / median[key]:.2f} images/s); "
              f"rounds: {', '.join(f'{t:.1f}' for t in timings[key])} s")
    print(f"ratio {peer} / ours: x{median[peer] / median['ours']:.2f} median, x{best[peer] / best['ours']:.2f} "
          f"best round (> 1: ours faster; goal 1.2 in float32)", flush=True)
    return 0
