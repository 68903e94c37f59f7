"""What both exporters (``detect.export.saved_model``, ``detect.export.tflite``) need."""


def export_inputs(detector):
    """What an export of ``detector`` must never write over: ``Detector.inputs`` and the dataset root."""
    from detect.data.formats import dataset_root

    inputs = list(detector.inputs)
    if detector.config is not None and detector.config.data.root:
        inputs.append(dataset_root(detector.config.data))
    return inputs
