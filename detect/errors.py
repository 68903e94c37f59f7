"""Errors raised for bad user input (files, annotations, configs)."""


class InputError(ValueError):
    """Bad input, reported as one line that names the file and the entry.

    Tools catch it, print ``str(error)`` and exit with status 2, without a
    traceback.
    """

    def __init__(self, source, message):
        self.source = str(source)
        self.message = message
        super().__init__(f"{self.source}: {message}")
