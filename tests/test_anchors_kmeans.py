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
