from dataclasses import dataclass, field
from typing import Optional, Tuple

import pytest

from detect.config import apply_overrides, from_dict, load_config, to_dict
from detect.errors import InputError


@dataclass(frozen=True)
class Inner:
    root: str = ""
    sizes: Tuple[int, ...] = (320, 416)
    scale: float = 1.0
    strict: bool = False


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    data: Inner = field(default_factory=Inner)
    epochs: int = 1
    note: Optional[str] = None
    pairs: Tuple[Tuple[float, float], ...] = ()


def test_nested_values_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ndata:\n  root: /d\n  sizes: [256, 288]\n  scale: 2\nepochs: 3\n"
                    "pairs: [[1, 2], [3.5, 4]]\n")
    cfg = load_config(Outer, path)
    assert cfg == Outer(name="run", data=Inner(root="/d", sizes=(256, 288), scale=2.0), epochs=3,
                        pairs=((1.0, 2.0), (3.5, 4.0)))
    with pytest.raises(InputError, match=r"pairs\[0\]: expected 2 values"):
        from_dict(Outer, {"pairs": [[1, 2, 3]]})
    assert to_dict(cfg)["data"]["sizes"] == [256, 288]


def test_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  rot: /d\n")
    with pytest.raises(InputError) as err:
        load_config(Outer, path)
    message = str(err.value)
    assert str(path) in message and "data.rot" in message
    for key in ("root", "sizes", "scale", "strict"):
        assert key in message


def test_overrides_apply_last_and_parse_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\ndata: {root: /a}\n")
    cfg = load_config(Outer, path, ["data.root=/x", "epochs=7", "data.strict=true", "data.sizes=[1, 2]",
                                    "note=hello"])
    assert cfg.data.root == "/x" and cfg.epochs == 7 and cfg.data.strict is True
    assert cfg.data.sizes == (1, 2) and cfg.note == "hello"
    with pytest.raises(InputError, match="unknown key 'data.nope'"):
        load_config(Outer, path, ["data.nope=1"])
    with pytest.raises(InputError, match="key.path=value"):
        apply_overrides({}, ["epochs"])


def test_bad_values_are_named(tmp_path):
    with pytest.raises(InputError, match="epochs: expected an integer"):
        from_dict(Outer, {"epochs": "many"}, "c.yaml")
    with pytest.raises(InputError, match="data.strict: expected true or false"):
        from_dict(Outer, {"data": {"strict": "yes please"}}, "c.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_config(Outer, path)
    with pytest.raises(InputError, match="cannot read config"):
        load_config(Outer, tmp_path / "missing.yaml")
