"""Reading user JSON files with errors that name the file and the place.

Parsing gives exactly what the standard library's ``json.loads`` gives (the
same values, the same errors and messages). orjson, when installed, parses
the files it can read the same way three to four times faster; the
standard library decides every file orjson refuses (NaN and Infinity,
lone surrogates, a byte-order mark, other encodings, malformed input), so
its messages are the ones users see.
"""

import gc
import json
from contextlib import contextmanager
from pathlib import Path

from detect.errors import InputError

try:
    import orjson
except ImportError:  # optional (pip install orjson): the standard library reads the same files, slower
    orjson = None

# bytes.translate table for _may_hold_big_integer: ASCII digits -> "0", the
# characters a digit run follows inside a number (fraction, exponent) -> ".",
# every other byte -> " ".
_NUMBER_SHAPE = b"".join(b"0" if c in b"0123456789" else b"." if c in b".eE+" else b" " for c in range(256))
# orjson reads integers outside [-2**63, 2**64) as floats, silently; every
# integer of at most 18 digits lies inside.
_DIGITS = b"0" * 19


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
        return parse_json(text)
    except json.JSONDecodeError as error:
        raise InputError(path, f"malformed JSON at line {error.lineno}, column {error.colno}: "
                               f"{error.msg}") from None
    except UnicodeDecodeError:
        raise InputError(path, "malformed JSON: not UTF-8 text") from None


def parse_json(text):
    """``json.loads(text)``, through orjson where that gives the same value.

    Args:
      text: the file's bytes.

    Returns:
      The parsed value: every number, string and container as
      ``json.loads`` makes it.

    Raises:
      json.JSONDecodeError, UnicodeDecodeError: as ``json.loads``.
    """
    with gc_paused():
        if orjson is not None and not _may_hold_big_integer(text):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                pass  # refused: the standard library decides, and words the error
        return json.loads(text)


@contextmanager
def gc_paused():
    """No cyclic garbage collection inside the block.

    A parser creates millions of containers (a COCO results file: a dict and
    a list per detection); each few hundred trigger a collection that walks
    the young ones, which made parsing about twice as slow. Parsed JSON holds
    no reference cycles, so nothing is left for the collector.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _may_hold_big_integer(text):
    """Whether ``text`` may hold an integer of 19 digits or more (orjson makes those floats).

    Conservative: a run of 19 digits that does not continue a fraction or an
    exponent, wherever it is (strings too), sends the file to the standard
    library; files written from floats (``0.00081700244615810``) do not.
    """
    shape = text.translate(_NUMBER_SHAPE)
    return shape.startswith(_DIGITS) or b" " + _DIGITS in shape
