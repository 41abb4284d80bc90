"""Draw the application icon: a stack of network layers with a check mark.

Run ``python tools/make_icons.py`` to (re)write

* ``resources/icons/hicolor/<N>x<N>/apps/transfer-gui.png`` for every size in
  :data:`SIZES` (the freedesktop icon-theme layout, ready to copy under ``/usr/share/icons``),
* ``resources/icons/hicolor/scalable/apps/transfer-gui.svg``,
* ``resources/icons/transfer-gui.png`` (256 px, for the window icon) and
  ``resources/icons/transfer-gui.svg``.

The picture: the lower, pale-blue slabs are the pretrained layers that stay frozen; the warm
amber slab on top is the new head that learns; the green badge says "it works". The drawing is
described once, in a 512-unit square, as a list of shapes; one renderer turns the list into
SVG text, the other paints it with Pillow at 4x and scales down (which anti-aliases every edge).
The smallest sizes get a simpler drawing (two slabs, a bigger badge) so they stay legible.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
NAME = "transfer-gui"
UNITS = 512  # the drawing's coordinate square
SMALL = 24  # sizes up to this get the simplified drawing
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "icons"

Point = tuple[float, float]

# Palette.
BG_TOP, BG_BOTTOM = "#5C7CFA", "#3442B8"  # indigo, lighter at the top
FROZEN = ("#EDF6FF", "#A5D8FF", "#74C0FC")  # top face, left side, right side
HEAD = ("#FFE066", "#FCC419", "#F59F00")
BADGE, BADGE_RING, CHECK = "#37B24D", "#FFFFFF", "#FFFFFF"


@dataclass(frozen=True)
class RoundedSquare:
    x0: float
    y0: float
    x1: float
    y1: float
    radius: float
    top: str  # vertical gradient from top colour ...
    bottom: str  # ... to bottom colour


@dataclass(frozen=True)
class Polygon:
    points: tuple[Point, ...]
    fill: str


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str


@dataclass(frozen=True)
class Stroke:
    """An open polyline with round caps and joins."""

    points: tuple[Point, ...]
    width: float
    colour: str


Shape = RoundedSquare | Polygon | Circle | Stroke


def _slab(cx: float, cy: float, half_w: float, half_h: float, thick: float,
          colours: Sequence[str]) -> list[Shape]:
    """One isometric slab: a diamond top face (centre cx, cy) and its two visible sides."""
    top, left, right = colours
    west, east = (cx - half_w, cy), (cx + half_w, cy)
    north, south = (cx, cy - half_h), (cx, cy + half_h)
    return [
        Polygon((west, south, (cx, cy + half_h + thick), (cx - half_w, cy + thick)), left),
        Polygon((south, east, (cx + half_w, cy + thick), (cx, cy + half_h + thick)), right),
        Polygon((north, east, south, west), top),
    ]


def shapes(simple: bool = False) -> list[Shape]:
    """The icon as shapes in a 512-unit square, painted in order."""
    out: list[Shape] = [RoundedSquare(32, 32, 480, 480, 104, BG_TOP, BG_BOTTOM)]
    if simple:
        # Two thick slabs and a large badge: what still reads at 16 px.
        for cy, colours in ((300, FROZEN), (206, HEAD)):
            out += _slab(240, cy, 176, 88, 40, colours)
        badge = (376, 376, 104)
        check = ((322, 380), (360, 418), (428, 342))
        check_w, ring = 40, 22
    else:
        for cy, colours in ((322, FROZEN), (254, FROZEN), (186, HEAD)):
            out += _slab(244, cy, 160, 80, 26, colours)
        badge = (372, 372, 80)
        check = ((332, 374), (360, 402), (412, 344))
        check_w, ring = 26, 14
    cx, cy, r = badge
    out += [Circle(cx, cy, r + ring, BADGE_RING), Circle(cx, cy, r, BADGE), Stroke(check, check_w, CHECK)]
    return out


# --- SVG ------------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:g}"


def _pts(points: Sequence[Point]) -> str:
    return " ".join(f"{_num(x)},{_num(y)}" for x, y in points)


def to_svg(items: Sequence[Shape]) -> str:
    defs: list[str] = []
    body: list[str] = []
    for i, s in enumerate(items):
        if isinstance(s, RoundedSquare):
            gid = f"bg{i}"
            defs.append(f'    <linearGradient id="{gid}" x1="0" y1="{_num(s.y0)}" x2="0" y2="{_num(s.y1)}" '
                        f'gradientUnits="userSpaceOnUse">\n'
                        f'      <stop offset="0" stop-color="{s.top}"/>\n'
                        f'      <stop offset="1" stop-color="{s.bottom}"/>\n'
                        f'    </linearGradient>')
            body.append(f'  <rect x="{_num(s.x0)}" y="{_num(s.y0)}" width="{_num(s.x1 - s.x0)}" '
                        f'height="{_num(s.y1 - s.y0)}" rx="{_num(s.radius)}" fill="url(#{gid})"/>')
        elif isinstance(s, Polygon):
            body.append(f'  <polygon points="{_pts(s.points)}" fill="{s.fill}"/>')
        elif isinstance(s, Circle):
            body.append(f'  <circle cx="{_num(s.cx)}" cy="{_num(s.cy)}" r="{_num(s.r)}" fill="{s.fill}"/>')
        elif isinstance(s, Stroke):
            body.append(f'  <polyline points="{_pts(s.points)}" fill="none" stroke="{s.colour}" '
                        f'stroke-width="{_num(s.width)}" stroke-linecap="round" stroke-linejoin="round"/>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{UNITS}" height="{UNITS}" '
            f'viewBox="0 0 {UNITS} {UNITS}">\n'
            '  <title>transfer_gui</title>\n'
            '  <defs>\n' + "\n".join(defs) + '\n  </defs>\n' + "\n".join(body) + "\n</svg>\n")


# --- Pillow ---------------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _gradient(size: int, y0: float, y1: float, top: str, bottom: str) -> Image.Image:
    a, b = _rgb(top), _rgb(bottom)
    column = Image.new("RGBA", (1, size))
    for y in range(size):
        t = min(max((y - y0) / max(y1 - y0, 1), 0.0), 1.0)
        column.putpixel((0, y), tuple(round(a[k] + (b[k] - a[k]) * t) for k in range(3)) + (255,))
    return column.resize((size, size), Image.Resampling.NEAREST)


def render(size: int, simple: bool | None = None, oversample: int = 4) -> Image.Image:
    """The icon as a square RGBA image of `size` pixels."""
    if simple is None:
        simple = size <= SMALL
    big = max(size * oversample, 256)
    k = big / UNITS
    canvas = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)

    def sc(points: Sequence[Point]) -> list[Point]:
        return [(x * k, y * k) for x, y in points]

    for s in shapes(simple):
        if isinstance(s, RoundedSquare):
            mask = Image.new("L", (big, big), 0)
            ImageDraw.Draw(mask).rounded_rectangle((s.x0 * k, s.y0 * k, s.x1 * k - 1, s.y1 * k - 1),
                                                   radius=s.radius * k, fill=255)
            canvas.paste(_gradient(big, s.y0 * k, s.y1 * k, s.top, s.bottom), (0, 0), mask)
        elif isinstance(s, Polygon):
            draw.polygon(sc(s.points), fill=s.fill)
        elif isinstance(s, Circle):
            draw.ellipse(((s.cx - s.r) * k, (s.cy - s.r) * k, (s.cx + s.r) * k, (s.cy + s.r) * k), fill=s.fill)
        elif isinstance(s, Stroke):
            pts = sc(s.points)
            w = s.width * k
            draw.line(pts, fill=s.colour, width=round(w), joint="curve")
            for x, y in (pts[0], pts[-1]):  # round caps
                draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=s.colour)
    return canvas.resize((size, size), Image.Resampling.LANCZOS) if big != size else canvas


def write_icons(out: Path = DEFAULT_OUT, sizes: Sequence[int] = SIZES) -> list[Path]:
    """Write every PNG and SVG; return the paths written."""
    written: list[Path] = []
    for size in sizes:
        path = out / "hicolor" / f"{size}x{size}" / "apps" / f"{NAME}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        render(size).save(path, optimize=True)
        written.append(path)
    main_png = out / f"{NAME}.png"
    render(256).save(main_png, optimize=True)
    svg = to_svg(shapes())
    for path in (out / f"{NAME}.svg", out / "hicolor" / "scalable" / "apps" / f"{NAME}.svg"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return [main_png] + written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="icons folder (default: the package's)")
    args = parser.parse_args(argv)
    for path in write_icons(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
