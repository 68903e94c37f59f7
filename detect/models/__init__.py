"""Detector families behind one protocol.

``detect.models.protocol``: what the engine, validation and ``Detector`` call
on a task (``Task``), read from a model config (``TaskConfig``), and one
training stage (``Stage``); ``detect.models.base``: its defaults and the
shared ``postprocess``. Both sit below the families, which import them.
``detect.models.registry``: ``model.type`` -> (config class, task class),
above the families, which it imports. This ``__init__`` imports neither, so
loading the protocol never loads a family.
"""
