"""YOLO (v2/v3 style) detectors.

``detect.yolo.model.YoloDetector`` builds one; ``detect.yolo.loss`` holds the
loss, ``detect.yolo.anchors`` the anchor priors and k-means,
``detect.yolo.darknet_weights`` the reader of Darknet's ``.weights`` files.
"""
