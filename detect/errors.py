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

    def __reduce__(self):
        # Pickled by its two arguments (the default would pass the joined text
        # alone), so it crosses a process boundary (detect.eval.background).
        return type(self), (self.source, self.message)


class UnknownClassError(InputError):
    """A class name or id that the class list lacks.

    Unlike a broken file, this usually means the class list itself is wrong
    (a config's ``data.classes``, ``data.yaml``), so readers that skip
    broken images still raise it.
    """
