"""Turn raw outputs into answers: top-k labels and scores, and non-maximum suppression."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, labels: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """The k best classes per row, best first: (labels as bytes [N, k], scores [N, k])."""
    k = min(k, scores.shape[-1])
    index = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, index, axis=-1).astype(np.float32)
    names = labels if labels is not None else [str(i) for i in range(scores.shape[-1])]
    text = np.array([[names[j].encode() for j in row] for row in index], dtype=np.object_)
    return text, best


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def nms(
    detections: np.ndarray, iou_threshold: float, score_threshold: float, max_detections: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class greedy NMS over rows of (x1, y1, x2, y2, score, class), per image.

    ``detections`` is [N, B, 6]. Returns the kept boxes [N, max_detections, 6], best first and
    padded with -1, and how many each image kept [N].
    """
    out = np.full((len(detections), max_detections, 6), -1.0, dtype=np.float32)
    counts = np.zeros(len(detections), dtype=np.int32)
    for n, boxes in enumerate(detections):
        boxes = boxes[boxes[:, 4] >= score_threshold]
        boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
        kept: list[np.ndarray] = []
        while len(boxes) and len(kept) < max_detections:
            best, boxes = boxes[0], boxes[1:]
            kept.append(best)
            same = boxes[:, 5] == best[5]
            overlap = np.zeros(len(boxes), dtype=bool)
            if same.any():
                overlap[same] = _iou(best, boxes[same]) > iou_threshold
            boxes = boxes[~overlap]
        counts[n] = len(kept)
        if kept:
            out[n, : len(kept)] = np.stack(kept)
    return out, counts
