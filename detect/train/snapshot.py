"""The config snapshot of a run (``config.yaml``): made, read back, compared on resume."""

from pathlib import Path

import yaml

from detect.config import to_dict


def config_snapshot(config):
    """Plain-dict copy of a config dataclass for ``config.yaml``."""
    return to_dict(config)


def read_yaml(path):
    """A YAML file's content, or None if it is missing or unreadable."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def changed_keys(old, new, section):
    """Dotted keys of ``section`` whose values differ between two config dicts (``old`` may be None)."""
    def flat(node, prefix):
        if isinstance(node, dict):
            return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}.{key}").items()}
        return {prefix: node}

    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    a, b = flat(old.get(section), section), flat(new.get(section), section)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
