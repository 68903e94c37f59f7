"""From a config's ``data`` section to records and class names.

Thin names over ``detect.data.formats``, the one dataset dispatcher that
training, evaluation from a config, ``tools/check_dataset.py`` and
``tools/anchors.py`` share; the rules (default class lists, what ``root``
and a split mean per format) are documented there.
"""

from detect.data import formats

dataset_root = formats.dataset_root


def prepare_data(data_cfg):
    """Generates the shapes dataset when the config asks for it and it is absent."""
    formats.prepare_dataset(data_cfg)


def class_names_of(data_cfg):
    """The config's class list, else the format's default or the dataset's own (list of str)."""
    return formats.config_class_names(data_cfg)[0]


def load_records(data_cfg, split, class_names, skipped=None):
    """The ``Record`` list of a split (a split name, COCO JSON or TFRecord pattern).

    Args:
      data_cfg: the ``data`` config section.
      split: the split to read.
      class_names: the class list.
      skipped: None to raise at the first broken annotation; a list to
        leave broken images out and append their ``InputError`` (the
        training run does this unless ``data.strict`` is set).

    Raises:
      InputError: see ``detect.data.formats.load_split``.
    """
    return formats.load_split(data_cfg, split, class_names, skipped)


def split_name(data_cfg, split):
    """``val`` / ``test`` / ``train`` name the config's splits; anything else is literal."""
    if split is None or split == "val":
        return data_cfg.val_split
    if split == "test":
        return data_cfg.test_split or split
    if split == "train":
        return data_cfg.train_split
    return split
