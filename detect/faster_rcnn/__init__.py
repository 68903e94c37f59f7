"""Faster R-CNN: RPN, proposals, RoI pooling, the Fast R-CNN head, and the paper's training schedules.

``model.type: faster_rcnn`` in a config (``FasterRcnnConfig``); the task is
``FasterRcnnTask`` (``detect.faster_rcnn.model``), the schedules are in
``detect.faster_rcnn.stages``.
"""
