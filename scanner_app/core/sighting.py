"""What the camera pipeline reports: a code that came into view (``CodeSighting``).

A module of its own, free of OpenCV, so that the app can name the type (in its typed signals)
before the camera code loads; ``pipeline`` produces sightings.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CodeSighting", "Point"]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class CodeSighting:
    """A code that came into view: what the pipeline's sink receives.

    ``source_time`` and ``captured_at`` are the frame's (see ``capture.CapturedFrame``); the time
    from ``captured_at`` to the sink call, on the same clock, is the pipeline's latency.
    """

    text: str
    corners: tuple[Point, ...]
    frame_index: int
    source_time: float
    captured_at: float
