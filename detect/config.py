"""Typed configuration: frozen dataclasses loaded from YAML.

``load_config(path, overrides)`` reads a YAML file into the dataclass tree
rooted at a given class, rejects unknown keys with the list of valid ones,
and applies ``a.b=value`` overrides (values parsed as YAML) last. Parsing
happens here only; builders take plain keyword arguments.

A field typed as a ``Union`` of dataclasses that each have a ``type``
field is a tagged union: the mapping's ``type`` key picks the class
(``ExperimentConfig.model``, see ``detect.models``).

Value rules are declared on the fields themselves: ``bounded(16, ge=1)``
and ``one_of("sgd", ("sgd", "adamw"))`` store the valid range or choices in
the field's metadata, and every config dataclass calls ``check_fields(self)``
from ``__post_init__``. A broken rule raises ``FieldError``; ``from_dict``
turns it into an ``InputError`` naming the dotted key, e.g.
``configs/x.yaml: train.batch_size must be >= 1, got 0``.
"""

import dataclasses
import math
import numbers
import re
import typing
from pathlib import Path

import yaml

from detect.errors import InputError

_RULE = "detect.config.rule"  # field-metadata key of a value rule


class FieldError(ValueError):
    """A config field holds a value outside its rule.

    Attributes:
      key: the field name relative to its dataclass, with list indices
        (``"batch_size"``, ``"multiscale_sizes[2]"``, ``"data.image_size"``).
      detail: what is wrong, e.g. ``"must be >= 1, got 0"``.
    """

    def __init__(self, key, detail):
        self.key = key
        self.detail = detail
        super().__init__(f"{key} {detail}")


@dataclasses.dataclass(frozen=True)
class _Range:
    ge: typing.Optional[float] = None
    gt: typing.Optional[float] = None
    le: typing.Optional[float] = None
    lt: typing.Optional[float] = None

    def holds(self, value):
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self):
        if (self.ge, self.gt) != (None, None) and (self.le, self.lt) != (None, None):
            left = f"[{self.ge}" if self.ge is not None else f"({self.gt}"
            right = f"{self.le}]" if self.le is not None else f"{self.lt})"
            return f"in {left}, {right}"
        op, bound = next((op, b) for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                         if b is not None)
        return f"{op} {bound}"


@dataclasses.dataclass(frozen=True)
class _Choices:
    values: tuple

    def holds(self, value):
        return value in self.values

    def describe(self):
        return f"one of {', '.join(repr(v) for v in self.values)}"


def bounded(default, *, ge=None, gt=None, le=None, lt=None):
    """A dataclass field whose numbers must lie in a range.

    For a tuple field (``Tuple[int, ...]``, nested tuples) the range applies
    to every number in it.

    Args:
      default: the default value (a number or a tuple of numbers).
      ge, gt, le, lt: bounds (``>=``, ``>``, ``<=``, ``<``); None = open.

    Returns:
      ``dataclasses.field`` for the class body.
    """
    lower = [b for b in (ge, gt) if b is not None]
    upper = [b for b in (le, lt) if b is not None]
    if len(lower) > 1 or len(upper) > 1 or not lower + upper:
        raise ValueError("bounded() takes at most one lower bound (ge or gt) and one upper (le or lt), "
                         "and at least one of them")
    return dataclasses.field(default=default, metadata={_RULE: _Range(ge, gt, le, lt)})


# Compute precision, one vocabulary for training (``train.mixed_precision``)
# and inference (``Detector.from_config(precision=)``): float32 is full
# precision, the other two Keras' mixed policies (float32 variables).
PRECISIONS = ("float32", "float16", "bfloat16")


def keras_policy(precision):
    """The Keras dtype policy name of a precision from ``PRECISIONS``."""
    return "float32" if precision == "float32" else f"mixed_{precision}"


def one_of(default, choices):
    """A dataclass field whose value must be one of ``choices``."""
    return dataclasses.field(default=default, metadata={_RULE: _Choices(tuple(choices))})


def check_fields(config):
    """Checks every ``bounded`` / ``one_of`` field of a dataclass instance.

    Call it first thing in ``__post_init__``.

    Raises:
      FieldError: the first field (or tuple element) outside its rule.
    """
    for f in dataclasses.fields(config):
        rule = f.metadata.get(_RULE)
        if rule is not None:
            _check_value(rule, getattr(config, f.name), f.name)


def _check_value(rule, value, key):
    if isinstance(rule, _Range) and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(rule, item, f"{key}[{i}]")
    elif isinstance(rule, _Range) and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                       or not math.isfinite(value)):
        raise FieldError(key, f"must be a finite number {rule.describe()}, got {value!r}")
    elif not rule.holds(value):
        raise FieldError(key, f"must be {rule.describe()}, got {value!r}")


def _field_types(cls):
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp):
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


# Numbers like 1e-9 or 5E3 (no dot), which YAML 1.1 (PyYAML) reads as strings.
_YAML12_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _convert(value, tp, where, source):
    """Converts a YAML value to the annotated type ``tp`` (recursively)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin is typing.Union:  # Optional[X] and friends
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if all(_is_dataclass_type(arg) and TAG in _defaults(arg) for arg in options):
            return _convert_tagged(value, options, where, source)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except InputError as error:
                errors.append(error.message)
        raise InputError(source, errors[0] if errors else f"{where}: bad value {value!r}")
    if _is_dataclass_type(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise InputError(source, f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, source, prefix=where)
    if origin in (tuple, list):
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise InputError(source, f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else typing.Any
        return tuple(_convert(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(source, f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(source, f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(source, f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML12_EXPONENT_FLOAT.match(value.strip()):
            value = float(value)  # "1e-9": a float in YAML 1.2, a string to PyYAML's YAML 1.1 resolver
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(source, f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(source, f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


TAG = "type"  # the field that picks a dataclass out of a tagged union


def _defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _convert_tagged(value, options, where, source):
    """A tagged union: the mapping's ``type`` picks the dataclass (the first option's when absent)."""
    by_tag = {_defaults(cls)[TAG]: cls for cls in options}
    if value is None:
        return options[0]()
    if not isinstance(value, dict):
        raise InputError(source, f"{where}: expected a mapping with a '{TAG}' key, got {value!r}")
    tag = value.get(TAG, _defaults(options[0])[TAG])
    if tag not in by_tag:
        raise InputError(source, f"{where}.{TAG}: unknown type {tag!r}; valid types: {', '.join(map(str, by_tag))}")
    return from_dict(by_tag[tag], value, source, prefix=where)


def from_dict(cls, mapping, source="<config>", prefix=""):
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys.

    Args:
      cls: a (frozen) dataclass type; nested dataclass fields recurse.
      mapping: dict from YAML.
      source: file name for error messages.
      prefix: dotted path of ``cls`` inside the whole config.

    Raises:
      InputError: an unknown key (listing the valid ones), or a value of the
        wrong type or outside its rule (naming the dotted key).
    """
    types = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in (mapping or {}).items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise InputError(source, f"unknown key '{where}'; valid keys{' of ' + prefix if prefix else ''}: "
                                     f"{', '.join(names)}")
        kwargs[key] = _convert(value, types[key], where, source)
    try:
        return cls(**kwargs)
    except FieldError as error:
        raise InputError(source, f"{prefix + '.' if prefix else ''}{error.key} {error.detail}") from None
    except (TypeError, ValueError) as error:
        raise InputError(source, f"{prefix or cls.__name__}: {error}") from None


def to_dict(config):
    """The dataclass tree as plain dicts/lists (for snapshots)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def apply_overrides(mapping, overrides, source="--set"):
    """Applies ``a.b.c=value`` strings to a nested dict (values parsed as YAML).

    Returns:
      A new dict; the input is not modified.
    """
    import copy

    result = copy.deepcopy(mapping) if mapping else {}
    for item in overrides or ():
        if "=" not in item:
            raise InputError(source, f"'{item}' is not of the form key.path=value")
        path, raw = item.split("=", 1)
        keys = [k for k in path.strip().split(".") if k]
        if not keys:
            raise InputError(source, f"'{item}' has an empty key")
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise InputError(source, f"'{path}': '{key}' is not a section")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise InputError(source, f"'{item}': value is not valid YAML ({error})") from None
    return result


def load_config(cls, path, overrides=()):
    """Reads a YAML file into dataclass ``cls`` and applies overrides.

    Args:
      cls: the root config dataclass.
      path: YAML file.
      overrides: iterable of ``key.path=value`` strings, applied last.

    Returns:
      An instance of ``cls``.

    Raises:
      InputError: unreadable or malformed YAML, unknown keys, bad values.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(path, f"cannot read config: {error.strerror or error}") from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(path, f"malformed YAML: {error}") from None
    if mapping is None:  # an empty file (or only comments): all defaults
        mapping = {}
    if not isinstance(mapping, dict):
        raise InputError(path, "the config must be a mapping of sections")
    mapping = apply_overrides(mapping, overrides)
    return from_dict(cls, mapping, source=path)
