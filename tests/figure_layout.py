"""The project's own layout check of exported figures: open an SVG in headless Chromium, measure the drawn
box of every text after the fonts have loaded, and list what a reader of the printed figure would see
wrong: texts that overlap, texts that leave the page, fonts outside 7-9 pt at print size.

Plotly's static exports are SVG with real <text> elements, so the boxes are what the PDF shows. The page is
the SVG's own width and height; its width in inches is given, so px convert to points at print size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TOLERANCE_PX = 1.0  # anti-aliasing and rounding, not layout
MIN_PT, MAX_PT = 7.0, 9.0

MEASURE = """
() => {
  const svg = document.querySelector('svg');
  const page = svg.getBoundingClientRect();
  const texts = [];
  for (const t of document.querySelectorAll('text')) {
    const text = (t.textContent || '').trim();
    if (!text) continue;
    const r = t.getBoundingClientRect();
    const style = getComputedStyle(t);
    if (r.width === 0 || r.height === 0 || style.visibility === 'hidden' || style.display === 'none') continue;
    texts.push({text, x0: r.left - page.left, y0: r.top - page.top, x1: r.right - page.left,
                y1: r.bottom - page.top, px: parseFloat(style.fontSize), family: style.fontFamily});
  }
  return {width: page.width, height: page.height, texts};
}
"""


@dataclass(frozen=True)
class Text:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    px: float
    family: str


@dataclass(frozen=True)
class Measured:
    width: float
    height: float
    texts: list[Text]


def measure(page, svg: Path) -> Measured:
    """The SVG's size and every drawn text's box, in the SVG's px, measured in this Playwright page."""
    page.goto(svg.resolve().as_uri())
    page.evaluate("document.fonts.ready")
    raw = page.evaluate(MEASURE)
    return Measured(raw["width"], raw["height"], [Text(**t) for t in raw["texts"]])


def problems(measured: Measured, width_in: float) -> list[str]:
    """Every overlap, every text outside the page, every font outside 7-9 pt at print size."""
    out = []
    pt_per_px = width_in * 72 / measured.width
    w, h = measured.width, measured.height
    for t in measured.texts:
        if t.x0 < -TOLERANCE_PX or t.y0 < -TOLERANCE_PX or t.x1 > w + TOLERANCE_PX or t.y1 > h + TOLERANCE_PX:
            box = f"({t.x0:.0f},{t.y0:.0f})-({t.x1:.0f},{t.y1:.0f})"
            out.append(f"outside the {w:.0f}x{h:.0f} page: {t.text!r} at {box}")
        size = t.px * pt_per_px
        if not MIN_PT - 0.05 <= size <= MAX_PT + 0.05:
            out.append(f"{t.text!r} is {size:.1f} pt at print size")
    for i, a in enumerate(measured.texts):
        for b in measured.texts[i + 1 :]:
            dx = min(a.x1, b.x1) - max(a.x0, b.x0)
            dy = min(a.y1, b.y1) - max(a.y0, b.y0)
            if dx > TOLERANCE_PX and dy > TOLERANCE_PX:
                out.append(f"{a.text!r} overlaps {b.text!r} ({dx:.0f} x {dy:.0f} px)")
    return out
