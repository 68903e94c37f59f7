"""A numpy port of the Pascal VOC devkit's AP algorithm (voc_eval / voc_ap).

Written for the tests as the independent reference: 1-based inclusive
corners with the devkit's ``+ 1`` widths, a stable sort of detections by
descending confidence, and its matching rule.
"""

import numpy as np


def voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_eval_class(gts, dets, use_07_metric, ovthresh=0.5):
    """AP of one class.

    Args:
      gts: {image: (boxes [n, 4] 1-based xmin, ymin, xmax, ymax, difficult [n])}.
      dets: list of (image, confidence, [xmin, ymin, xmax, ymax]) 1-based.

    Returns:
      (ap, rec, prec); ap is NaN without non-difficult ground truth.
    """
    npos = sum(int((~d).sum()) for _, d in gts.values())
    taken = {img: np.zeros(len(b), bool) for img, (b, _) in gts.items()}
    conf = np.array([d[1] for d in dets])
    order = np.argsort(-conf, kind="mergesort")
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for rank, d in enumerate(order):
        image, _, bb = dets[d]
        bb = np.asarray(bb, float)
        ovmax = -np.inf
        if image in gts and len(gts[image][0]):
            bbgt = gts[image][0]
            ixmin = np.maximum(bbgt[:, 0], bb[0])
            iymin = np.maximum(bbgt[:, 1], bb[1])
            ixmax = np.minimum(bbgt[:, 2], bb[2])
            iymax = np.minimum(bbgt[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                   + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not gts[image][1][jmax]:
                if not taken[image][jmax]:
                    tp[rank] = 1.0
                    taken[image][jmax] = True
                else:
                    fp[rank] = 1.0
        else:
            fp[rank] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    if npos == 0:
        return float("nan"), tp, tp
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric), rec, prec
