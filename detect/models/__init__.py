"""The task registry (``detect.models.registry``) and the task protocol (``detect.models.protocol``).

``TASKS``, ``ModelConfig``, ``build_task`` and ``default_model_config`` are
the registry's, loaded on first use: the task modules import
``detect.models.protocol`` and ``detect.models.base``, which must not pull
the registry (and so every task module) in while they load.
"""

__all__ = ["ModelConfig", "TASKS", "build_task", "default_model_config"]


def __getattr__(name):
    if name in __all__:
        from detect.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
