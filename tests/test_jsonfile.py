"""detect.jsonfile: orjson when installed, the standard library's values and errors either way."""

import gc
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detect import jsonfile
from detect.errors import InputError
from detect.jsonfile import load_json, parse_json

try:
    import orjson
except ImportError:
    orjson = None

needs_orjson = pytest.mark.skipif(orjson is None, reason="orjson is not installed (pip install orjson)")


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request, monkeypatch):
    """Runs a test with orjson (when installed) and with the standard-library fallback."""
    if request.param == "orjson" and orjson is None:
        pytest.skip("orjson is not installed (pip install orjson)")
    if request.param == "stdlib":
        monkeypatch.setattr(jsonfile, "orjson", None)
    return request.param


def same(a, b):
    """Equal values of equal types, all the way down (1 vs 1.0, -0.0 vs 0.0, NaN and key order count)."""
    return repr(a) == repr(b) and type(a) is type(b)


# Texts on which orjson and json differ, or nearly: the standard library's reading must win.
EDGE_TEXTS = [
    b"123456789012345678901234567890",            # beyond 64 bits: orjson would give a float
    b"[-9223372036854775809, 18446744073709551616]",
    b"[9223372036854775807, -9223372036854775808, 18446744073709551615, 123456789012345678]",
    b'{"id": 12345678901234567890123, "bbox": [0.00081700244615810672]}',
    b"1" * 400,
    b"[NaN, Infinity, -Infinity]",                # the standard library's extension
    b"[1e400, -1e400, 1e-400, 1.7976931348623159e308]",
    b'"\\ud800"',                                 # lone surrogate
    b"\xef\xbb\xbf[1, 2]",                        # UTF-8 byte-order mark
    '[1, "\u00e9"]'.encode("utf-16"),             # another encoding
    b'{"a": 1, "b": 2, "a": 3}',                  # duplicate key: the last value, the first place
    b"[-0, -0.0, 0e0, 1E2, 1e-5, 2.2250738585072011e-308, 4.9e-324, 0.1e1]",
    b'[0.30000000000000004, 0.1, 1.7976931348623157e308, 3.141592653589793238462643383279]',
    b'{"s": "\\u00e9\\ud83d\\ude00\\/\\"", "t": true, "f": false, "n": null}',
    b"[" * 200 + b"]" * 200,
]

MALFORMED = [
    b'[{"image_id": 1, "category_id": 2,\n  "bbox": [1, 2, 3, 4] "score": 1}]',
    b'{"images": [\n  {"id": 1,}\n]}',
    b"[1, 2",
    b"",
    b"   ",
    b"[1] x",
    b"01",
    b"[.5]",
    b'"a\tb"',
    b"\xff[1]",
    b"[1,]",
]


@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_edge_cases_read_as_the_standard_library_reads_them(parser, text):
    assert same(parse_json(text), json.loads(text))


@pytest.mark.parametrize("text", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_files_keep_the_standard_library_message(parser, tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        expected = f"{path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
    except UnicodeDecodeError:
        expected = f"{path}: malformed JSON: not UTF-8 text"
    with pytest.raises(InputError) as info:
        load_json(path)
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


@needs_orjson
def test_big_integers_are_seen_before_orjson_reads_them():
    for digits in range(19, 40):
        for sign in ("", "-"):
            value = int(sign + "9" * digits)
            for text in (f"{value}", f"[1, {value}]", f'{{"id":{value}}}', f"[\n{value}\n]"):
                assert jsonfile._may_hold_big_integer(text.encode()), text
                assert same(parse_json(text.encode()), json.loads(text))
    # What files written from floats hold does not count: orjson reads those.
    assert not jsonfile._may_hold_big_integer(b"[0.00081700244615810672, 1.2345678901234567e+300, 123456789012345678]")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30)


@given(value=JSON_VALUES, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_value_reads_as_the_standard_library_reads_it(value, indent, ascii_only):
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    assert same(parse_json(text), json.loads(text))


def test_garbage_collection_is_back_as_it_was(parser):
    assert gc.isenabled()
    parse_json(b"[[1], [2]]")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_json(b"[[1], [2]]")
        assert not gc.isenabled()
    finally:
        gc.enable()


@needs_orjson
def test_coco_results_load_to_the_same_arrays_with_and_without_orjson(tmp_path, monkeypatch):
    from detect.bench.eval import coco_scale_dataset
    from detect.eval.loaders import load_coco_dets, load_coco_gt

    gt_dict, results = coco_scale_dataset(1, num_images=40)
    results[3]["score"] = 0.000817002446158106  # a long fraction, as models write them
    gt_path, dets_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt_dict))
    dets_path.write_text(json.dumps(results))

    def load():
        gt = load_coco_gt(gt_path)
        return gt, load_coco_dets(dets_path, gt)

    fast_gt, fast = load()
    monkeypatch.setattr(jsonfile, "orjson", None)
    slow_gt, slow = load()
    for name in ("image_index", "classes", "boxes_xywh", "area", "ignore"):
        a, b = getattr(fast_gt, name), getattr(slow_gt, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert fast_gt.image_ids == slow_gt.image_ids and fast_gt.category_ids == slow_gt.category_ids
    for name in ("image_index", "classes", "boxes_xywh", "scores"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert len(fast.scores) == len(results) and math.isclose(fast.scores[3], 0.000817002446158106, rel_tol=0)
