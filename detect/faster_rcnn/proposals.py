"""Region proposals from the RPN's outputs (py-faster-rcnn ProposalLayer)."""

import tensorflow as tf

from detect.ops import PAD_INDEX, clip_boxes, decode_boxes, nms
from detect.ops.gather import gather_or_fill

_NEG_INF = float("-inf")


def generate_proposals(objectness, deltas, anchors, image_hw, pre_nms_top_n=6000, post_nms_top_n=300, nms_iou=0.7,
                       min_size=16.0):
    """Turns anchor scores and deltas into a fixed number of proposals per image.

    As py-faster-rcnn's ProposalLayer: apply the deltas to the anchors, clip
    the boxes to the image's valid extent ``[0, w] x [0, h]``, drop boxes
    narrower or lower than ``min_size``, keep the ``pre_nms_top_n`` best by
    score, greedy NMS at ``nms_iou``, keep the ``post_nms_top_n`` best.

    Differences from py-faster-rcnn: one sigmoid logit per anchor instead of
    a 2-way softmax (the same model: ``softmax(bg, fg)[fg] =
    sigmoid(fg - bg)``); continuous box sizes (``x2 - x1``, theirs
    ``x2 - x1 + 1``), also in NMS; the log-scale deltas are clamped at
    ``log(1000 / 16)`` before exp(); the output is padded to a static
    ``post_nms_top_n`` with a validity mask; no gradient flows back (as in
    theirs, where the layer has no backward pass).

    Args:
      objectness: [B, N] logits, one per anchor.
      deltas: [B, N, 4] (tx, ty, tw, th), ``encode_boxes`` weights 1.
      anchors: [N, 4] xyxy input pixels, shared by the batch (N may be
        known only at run time; then the op runs in ``tf.function`` but not
        under XLA).
      image_hw: [B, 2] int (height, width) of each image's valid extent.
      pre_nms_top_n: best boxes entering NMS (Python int); <= 0 or >= N
        means all.
      post_nms_top_n: K, the static number of proposals per image (Python
        int); <= 0 means everything NMS keeps (K = the NMS input size, or
        ``pre_nms_top_n`` when N is known only at run time).
      nms_iou: IoU above which NMS suppresses a box.
      min_size: smallest width and height kept, input pixels; scalar or [B]
        (py-faster-rcnn passes RPN_MIN_SIZE times the image's scale).

    Returns:
      dict with ``boxes`` [B, K, 4] float32 xyxy (0 in padding), ``scores``
      [B, K] sigmoid probabilities by descending score (0 in padding),
      ``valid`` [B, K] bool, ``num_proposals`` [B] int32.
    """
    objectness = tf.stop_gradient(tf.cast(objectness, tf.float32))
    deltas = tf.stop_gradient(tf.cast(deltas, tf.float32))
    anchors = tf.cast(anchors, tf.float32)
    image_hw = tf.cast(image_hw, tf.float32)

    boxes = decode_boxes(deltas, anchors[None])  # [B, N, 4]
    boxes = clip_boxes(boxes, image_hw[:, 0:1], image_hw[:, 1:2])
    min_size = tf.reshape(tf.cast(min_size, tf.float32), [-1, 1])  # [1, 1] or [B, 1]
    # Written as ">=" so that NaN sizes or logits (and -inf logits) drop out.
    keep = ((boxes[..., 2] - boxes[..., 0] >= min_size) & (boxes[..., 3] - boxes[..., 1] >= min_size)
            & (objectness > _NEG_INF))
    # Dropped boxes score -inf: they sort last and NMS never keeps them.
    scores = tf.where(keep, objectness, _NEG_INF)

    pre, out = int(pre_nms_top_n), int(post_nms_top_n)
    num_anchors = scores.shape[1]  # None when the feature map size is only known at run time
    if num_anchors is not None:
        k = num_anchors if pre <= 0 else min(pre, num_anchors)
    else:
        k = tf.shape(scores)[1] if pre <= 0 else tf.minimum(pre, tf.shape(scores)[1])
    if out <= 0:
        # The output needs a static size: the NMS input size, or its cap.
        if isinstance(k, int):
            out = k
        elif pre > 0:
            out = pre
        else:
            raise ValueError("generate_proposals: with a run-time number of anchors, post_nms_top_n or "
                             "pre_nms_top_n must be > 0 (the output size must be static)")
    top_scores, order = tf.math.top_k(scores, k=k)  # ties: lower anchor index first
    top_boxes = tf.where((top_scores > _NEG_INF)[..., None], tf.gather(boxes, order, batch_dims=1), 0.0)

    kept, num_proposals = nms(top_boxes, top_scores, iou_threshold=nms_iou, max_output_size=out,
                              score_threshold=_NEG_INF)
    valid = kept != PAD_INDEX
    return {
        "boxes": gather_or_fill(top_boxes, kept, 0.0),
        "scores": tf.where(valid, tf.sigmoid(gather_or_fill(top_scores, kept, 0.0)), 0.0),
        "valid": valid,
        "num_proposals": num_proposals,
    }
