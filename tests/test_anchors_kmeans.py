import numpy as np
import pytest

from detect.yolo.anchors import kmeans_anchors, wh_iou


def test_wh_iou_hand_values():
    np.testing.assert_allclose(wh_iou([[10, 10]], [[10, 10], [20, 20], [10, 5]]), [[1.0, 0.25, 0.5]])


def test_kmeans_recovers_well_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[10, 12], [40, 30], [120, 200]], float)
    wh = np.concatenate([c * np.exp(rng.normal(0, 0.03, (200, 2))) for c in centres])
    anchors, mean_iou = kmeans_anchors(wh, 3, seed=1)
    np.testing.assert_allclose(anchors, centres, rtol=0.05)
    assert mean_iou > 0.9
    # The reported mean IoU is the mean best IoU, computed independently here.
    assert mean_iou == pytest.approx(wh_iou(wh, anchors).max(axis=1).mean())


def test_kmeans_rejects_too_few_boxes():
    with pytest.raises(ValueError, match="at least 3"):
        kmeans_anchors([[1, 1], [2, 2]], 3)


ANCHORS = [[10.5, 13.0], [16.0, 30.0]]
FLOW = "[[10.5, 13], [16, 30]]"


@pytest.mark.parametrize("before, after", [
    # An existing block list: replaced on its key's line; comments elsewhere, order and layout kept.
    ("# mine\nname: x  # keep\nmodel:\n  backbone: tiny   # why\n  anchors:\n    - [1, 2]\n    - [3, 4]\n"
     "  # note\n  head_width: 8\ntrain:\n  epochs: 3\n",
     f"# mine\nname: x  # keep\nmodel:\n  backbone: tiny   # why\n  anchors: {FLOW}\n"
     "  # note\n  head_width: 8\ntrain:\n  epochs: 3\n"),
    # An indentless nested block list.
    ("model:\n  anchors:\n  - - 1\n    - 2\n  # c\n  x: 1\n", f"model:\n  anchors: {FLOW}\n  # c\n  x: 1\n"),
    # Flow style, present and absent.
    ("model: {backbone: tiny, anchors: [[1,2]]}  # f\n", f"model: {{backbone: tiny, anchors: {FLOW}}}  # f\n"),
    ("model: {backbone: tiny}\n", f"model: {{anchors: {FLOW}, backbone: tiny}}\n"),
    # No anchors yet: the first key of the block, at its indentation.
    ("model:\n    backbone: tiny\n", f"model:\n    anchors: {FLOW}\n    backbone: tiny\n"),
    # No model section, or an empty one.
    ("name: x\n# end\n", f"name: x\n# end\nmodel:\n  anchors: {FLOW}\n"),
    ("name: x\nmodel:\ntrain: {epochs: 1}\n", f"name: x\nmodel:\n  anchors: {FLOW}\ntrain: {{epochs: 1}}\n"),
])
def test_write_anchors_changes_only_the_anchors_text(tmp_path, before, after):
    import yaml

    from detect.yolo.anchors import write_anchors

    path = tmp_path / "my.yaml"
    path.write_text(before)
    write_anchors(path, ANCHORS)
    assert path.read_text() == after
    assert yaml.safe_load(after)["model"]["anchors"] == ANCHORS


def test_write_anchors_refuses_what_it_cannot_edit_and_leaves_the_file(tmp_path):
    from detect.errors import InputError
    from detect.yolo.anchors import write_anchors

    for text, message in (("model: 3\n", "model is not a mapping"), ("model: [\n", "malformed YAML")):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            write_anchors(path, ANCHORS)
        assert path.read_text() == text
