# SPDX-License-Identifier: GPL-3.0-or-later
"""Plane geometry shared by the layout's unit tests and the Chromium measurement of the graph."""

from __future__ import annotations

from collections.abc import Sequence


def segment_crosses(start: Sequence[float], end: Sequence[float], rectangle: Sequence[float], inset: float = 1.0) -> bool:
    """Does the segment enter the interior of ``rectangle`` (left, top, width, height) shrunk by ``inset``?

    Liang-Barsky clipping: the segment's parameter range inside each of the four half-planes.
    """
    (x1, y1), (x2, y2) = start, end
    left, top, width, height = rectangle
    dx, dy = x2 - x1, y2 - y1
    low, high = 0.0, 1.0
    for p, q in ((-dx, x1 - left - inset), (dx, left + width - inset - x1), (-dy, y1 - top - inset), (dy, top + height - inset - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        ratio = q / p
        if p < 0:
            low = max(low, ratio)
        else:
            high = min(high, ratio)
        if low > high:
            return False
    return high - low > 1e-9
