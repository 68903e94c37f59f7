"""Checks of TFRecord shards (``detect.data.tfrecord``), read by the TFRecord reader."""

from detect.data.checker.finish import finish_report
from detect.data.checker.report import DUPLICATE_ID, MALFORMED_ANNOTATION, Problem
from detect.errors import InputError


def check_tfrecord(sources, class_names=None, decode_images=True):
    """Checks TFRecord shards (``detect.data.tfrecord``), one file pattern per split.

    The records carry their image bytes, which are decoded and checked as
    files are; boxes are checked as for every format. A file that cannot be
    read is a ``MALFORMED_ANNOTATION`` problem and ends that file's check.

    Args:
      sources: {split name: folder, file or glob of shards}.
      class_names: None to take the class names the examples store; else
        they must be these.
      decode_images: see ``check_dataset``.

    Returns:
      ``DatasetReport``; images are keyed by their stored id.

    Raises:
      InputError: a pattern that matches no file, or class names other
        than ``class_names``.
    """
    from detect.data.formats import check_class_names
    from detect.data.tfrecord import read_tfrecords, tfrecord_files  # TensorFlow

    problems, notes, records, split_keys = [], [], {}, {}
    for split, pattern in sources.items():
        keys = split_keys[split] = []
        seen = set()
        for path in tfrecord_files(pattern):
            try:
                found = read_tfrecords(path)
            except InputError as error:
                problems.append(Problem(MALFORMED_ANNOTATION, error.source, error.message))
                continue
            for record in found:
                if class_names is None:
                    class_names = record.class_names
                check_class_names(record.class_names, class_names, path)
                if record.image_id in seen:
                    problems.append(Problem(DUPLICATE_ID, path, f"image id {record.image_id!r} is "
                                                                f"stored twice in split {split!r}"))
                    continue
                seen.add(record.image_id)
                keys.append(record.image_id)
                records.setdefault(record.image_id, (record, path, None))
    source = ", ".join(dict.fromkeys(map(str, sources.values())))
    return finish_report(source, "tfrecord", tuple(class_names or ()), "the examples' class names",
                         split_keys, records, problems, notes, decode_images)
