"""Small charts drawn on the server as inline SVG (no script, no network assets): the
geometry is computed here, the template draws it. The plot fills its SVG, which stretches to
the box the page gives it; the scale's figures are HTML beside it, so that they keep their
size on a phone and on a wide screen alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

#: the drawing area of a chart in SVG units (stretched to the page's box)
WIDTH, HEIGHT = 600, 160


@dataclasses.dataclass(frozen=True)
class LineChart:
    """A line over time, ready to draw: the polyline's points, the scale and the span."""

    points: str
    area: str
    top: float
    #: the scale's lines, top to bottom: (SVG height, value)
    ticks: list[tuple[float, float]]
    start: dt.datetime
    end: dt.datetime
    samples: int
    peak: float
    width: int = WIDTH
    height: int = HEIGHT


def _scale_top(peak: float) -> float:
    """The top of the scale: at least 1, else the peak rounded up to 1, 2 or 5 × 10ⁿ."""
    if peak <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(peak))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= peak)


def load_chart(history: Sequence[Sequence[Any]]) -> LineChart | None:
    """The load history of a resource (``[unix time, load, memory]`` samples, oldest first)
    as a line chart; None with fewer than two samples (nothing to draw a line through)."""
    samples = [(int(row[0]), float(row[1])) for row in history if row and row[1] is not None]
    if len(samples) < 2:
        return None
    first, last = samples[0][0], samples[-1][0]
    span = max(last - first, 1)
    peak = max(load for _stamp, load in samples)
    top = _scale_top(peak)

    def x(stamp: int) -> float:
        return round((stamp - first) / span * WIDTH, 1)

    def y(load: float) -> float:
        return round(HEIGHT - load / top * HEIGHT, 1)

    line = " ".join(f"{x(stamp)},{y(load)}" for stamp, load in samples)
    area = f"{x(first)},{HEIGHT} {line} {x(last)},{HEIGHT}"
    ticks = [(y(top * part / 2), top * part / 2) for part in (2, 1, 0)]
    return LineChart(points=line, area=area, top=top, ticks=ticks, samples=len(samples),
                     start=dt.datetime.fromtimestamp(first, dt.UTC),
                     end=dt.datetime.fromtimestamp(last, dt.UTC), peak=peak)
