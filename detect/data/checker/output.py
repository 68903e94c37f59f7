"""The dataset checker's report as text (``format_report``) and as JSON (``report_to_json``)."""

import numpy as np

from detect.data.checker.report import PROBLEM_TITLES, SIZE_BUCKETS, UNION


def format_report(report, max_listed=20):
    """The report as readable text.

    Args:
      report: a ``DatasetReport``.
      max_listed: problems listed per kind; 0 lists all.

    Returns:
      str, several lines, no trailing newline.
    """
    names = list(report.class_names)
    lines = [f"Dataset: {report.dataset} ({report.format.upper()})",
             f"Classes ({len(names)}, from {report.classes_from}): {', '.join(names) or 'none'}", ""]

    rows = [(split, s) for split, s in report.splits.items()] + [(f"{UNION} of splits", report.union)]
    first = max([len("split")] + [len(r[0]) for r in rows])
    widths = [max(len(n), 6) for n in names]
    lines.append(f"{'split':<{first}}  {'images':>7}  {'boxes':>7}  "
                 + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    for split, s in rows:
        lines.append(f"{split:<{first}}  {s.images:>7}  {s.boxes:>7}  "
                     + "  ".join(f"{s.boxes_per_class[n]:>{w}}" for n, w in zip(names, widths)))

    if report.image_sizes:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.image_sizes.most_common(5))
        more = len(report.image_sizes) - 5
        lines += ["", f"Image sizes (w x h): {common}" + (f", and {more} more sizes" if more > 0 else "")]

    lines += ["", f"Box sizes, sqrt(area) in px, {UNION} of splits:"]
    first = max([len("class"), len("all")] + [len(n) for n in names])
    widths = [max(len(b), 6) for b in SIZE_BUCKETS]
    lines.append(f"{'class':<{first}}  " + "  ".join(f"{b:>{w}}" for b, w in zip(SIZE_BUCKETS, widths)))
    total = np.zeros(len(SIZE_BUCKETS), np.int64)
    for name in names:
        counts = report.size_histogram[name]
        total += counts
        lines.append(f"{name:<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(counts, widths)))
    lines.append(f"{'all':<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(total.tolist(), widths)))

    lines += ["", f"Problems: {len(report.problems)}" if report.problems else "Problems: none"]
    for kind, problems in report.problems_by_kind().items():
        lines.append(f"  {PROBLEM_TITLES[kind]}: {len(problems)}")
        shown = problems if max_listed <= 0 else problems[:max_listed]
        lines += [f"    {p.source}: {p.message}" for p in shown]
        if len(shown) < len(problems):
            lines.append(f"    ... and {len(problems) - len(shown)} more")
    if report.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in report.notes]
    return "\n".join(lines)


def report_to_json(report):
    """The report as JSON-ready dict (everything ``format_report`` shows, all problems)."""
    def summary(s):
        return {"images": s.images, "boxes": s.boxes, "boxes_per_class": dict(s.boxes_per_class)}

    return {
        "dataset": report.dataset,
        "format": report.format,
        "classes": list(report.class_names),
        "classes_from": report.classes_from,
        "splits": {split: summary(s) for split, s in report.splits.items()},
        UNION: summary(report.union),
        "image_sizes": [{"width": w, "height": h, "images": n}
                        for (w, h), n in report.image_sizes.most_common()],
        "box_size_buckets": list(SIZE_BUCKETS),
        "box_size_histogram": dict(report.size_histogram),
        "num_problems": len(report.problems),
        "problems": {kind: [{"source": p.source, "message": p.message} for p in problems]
                     for kind, problems in report.problems_by_kind().items()},
        "notes": list(report.notes),
    }
