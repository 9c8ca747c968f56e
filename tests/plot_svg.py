"""Reading the report's plot SVG (harness.report.plots) in tests: markers with their tooltips, error bars, labels, the
axes' frame, ids and references, all in the SVG's user units (px, y growing downwards)."""

from __future__ import annotations

import re
from xml.etree import ElementTree


def parse(svg: str) -> ElementTree.Element:
    """Return the ``<svg>`` element of a plot's markup."""
    return ElementTree.fromstring(str(svg))


def groups(svg: str, kind: str) -> list[ElementTree.Element]:
    """Return the groups of a kind of series (``<plot id>-<kind>-<index>``: "series", "front", "errorbar", ...)."""
    pattern = re.compile(rf".+-{re.escape(kind)}-\d+")
    return [g for g in parse(svg).iter("g") if pattern.fullmatch(g.get("id", ""))]


def markers(svg: str) -> dict[str, tuple[float, float]]:
    """Return each marker with a tooltip: tooltip -> (x, y)."""
    return {use.find("title").text: (float(use.get("x")), float(use.get("y")))
            for use in parse(svg).iter("use") if use.find("title") is not None}


def bars(svg: str) -> list[tuple[float, float, float, str]]:
    """Return each error bar: x, the pixel of its low end and of its high end (low > high: y grows down), style."""
    out = []
    for group in groups(svg, "errorbar"):
        for path in group.iter("path"):
            x1, y1, x2, y2 = (float(v) for v in re.fullmatch(r"M (\S+) (\S+) L (\S+) (\S+)", path.get("d")).groups())
            assert x1 == x2
            out.append((x1, max(y1, y2), min(y1, y2), path.get("style")))
    return sorted(out)


def frame(svg: str) -> tuple[float, float, float, float]:
    """Return the axes' area: left, top, right, bottom (px)."""
    axes = next(g for g in parse(svg).iter("g") if g.get("id", "").endswith("-axes_1"))
    numbers = [float(v) for v in re.findall(r"[-\d.]+", next(axes.iter("path")).get("d"))]
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def labels(svg: str) -> list[str]:
    """Return the labels written beside the points, in order."""
    return ["".join(g.itertext()).strip() for g in groups(svg, "label")]


def texts(svg: str) -> list[str]:
    """Return every text of the figure (a line of a wrapped one apart)."""
    return [t.text or "" for t in parse(svg).iter("text")]
