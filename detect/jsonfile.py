"""Reading user JSON files with errors that name the file and the place."""

import json
from pathlib import Path

from detect.errors import InputError


def load_json(path):
    """Parses a JSON file; unreadable or malformed files raise ``InputError``.

    Args:
      path: file path.

    Returns:
      The parsed value.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as error:
        raise InputError(path, f"cannot read: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(path, f"malformed JSON at line {error.lineno}, column {error.colno}: "
                               f"{error.msg}") from None
    except UnicodeDecodeError:
        raise InputError(path, "malformed JSON: not UTF-8 text") from None
