"""Splitting the test files between processes that run at once (``tools/test.py``, ``pytest --shard I/N``).

The suite keeps a 2-core machine about 1.1 cores busy (much of it is process
start-up, file work and small graphs), so two pytest processes side by side
finish it in well under the time of one. A share is a set of whole files (a
module's fixtures are built once, in one process); files that use the
session's trained YOLO (``yolo_run`` in conftest) go together, so it is
trained once. Shares are balanced by the seconds each file took in the
default set alone (2026-12-07, 2-core AVX2 EPYC); a file not listed counts
``UNLISTED_SECONDS``. The weights only balance the shares: a stale figure
makes one finish later, never skips a test.
"""

UNLISTED_SECONDS = 5.0
SECONDS = {
    "test_faster_rcnn.py": 140, "test_detector.py": 135, "test_frcnn_overfit.py": 106, "test_tflite.py": 100,
    "test_detect_tool_outputs.py": 90, "test_multi_worker.py": 89, "test_train_engine.py": 87,
    "test_transfer.py": 63, "test_train_bad_input.py": 63, "test_train_outputs.py": 62, "test_nms.py": 60,
    "test_predict.py": 58, "test_yolo_overfit.py": 5, "test_stages.py": 46, "test_detector_inputs.py": 33,
    "test_eval_cli.py": 22, "test_mosaic.py": 22, "test_convert_darknet.py": 18, "test_train_run.py": 18,
    "test_yolo_model.py": 16, "test_resume.py": 15, "test_pipeline.py": 15, "test_roi.py": 13,
    "test_dataset_dispatch.py": 13, "test_export_outputs.py": 12, "test_two_replicas.py": 12,
    "test_data_readers.py": 11, "test_frcnn_proposals.py": 9, "test_augment_workers.py": 25,
    "test_eval_cold.py": 10, "test_bench_peer.py": 8, "test_eval_background.py": 5, "test_conv_grads.py": 6,
    "test_fit_cache.py": 30,
}
# Files that share a session fixture run in one share.
TOGETHER = (("test_detector.py", "test_detect_tool_outputs.py", "test_yolo_overfit.py"),)


def parse_shard(text):
    """``"I/N"`` -> (I, N), 0 <= I < N; ValueError otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: I must be in [0, N)")
    return index, count


def assign(file_names, count):
    """{file name: share index}: whole groups, the heaviest first, each to the lightest share so far."""
    names = sorted(set(file_names))
    group_of = {name: group for group in TOGETHER for name in group}
    units = {}
    for name in names:
        units.setdefault(group_of.get(name, (name,)), []).append(name)
    load = [0.0] * count
    shares = {}
    for unit in sorted(units, key=lambda u: (-sum(SECONDS.get(n, UNLISTED_SECONDS) for n in units[u]), u)):
        lightest = min(range(count), key=lambda i: (load[i], i))
        load[lightest] += sum(SECONDS.get(n, UNLISTED_SECONDS) for n in units[unit])
        for name in units[unit]:
            shares[name] = lightest
    return shares
