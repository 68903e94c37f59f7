"""YOLO (v2/v3 style) detectors.

``detect.yolo.config.YoloConfig`` describes one, ``detect.yolo.model.YoloTask``
builds and trains it; ``detect.yolo.loss`` holds the loss,
``detect.yolo.anchors`` the anchor priors and k-means,
``detect.yolo.darknet_weights`` the reader of Darknet's ``.weights`` files.
"""
