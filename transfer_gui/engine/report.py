"""``report.html``: one self-contained page about an evaluation, readable offline and printable.

Nothing is fetched from a network: the charts are inline SVG drawn here, the thumbnails and a
large confusion heat map are PNG/JPEG ``data:`` URIs, the style is one ``<style>`` block.
Every piece of text that comes from the user (class names, paths, config values) is escaped.

Sections: the figures at a glance, the run's settings (when the run is known), training curves
(loss, accuracy, learning rate from ``metrics.jsonl``), the per-class table with macro and
weighted rows, the confusion matrix (a coloured table up to :data:`TABLE_MAX_CLASSES` classes, a
heat-map image beyond), the reliability diagram with ECE (before and after the temperature when
known), the most confused pairs, a gallery of mistakes and the files that could not be read.

:func:`build_html` takes the :class:`transfer_gui.engine.evaluate.Evaluation` (read by its
attributes; this module imports no other engine module than ``metrics``, so no torch).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from transfer_gui.engine import metrics

TABLE_MAX_CLASSES = 20
GALLERY_MAX = 48
THUMB_PX = 128
SKIPPED_MAX = 50
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
SETTING_SECTIONS = ("model", "layers", "optim", "schedule", "train", "data")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
 color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0} th,td{padding:.2em .6em;border:1px solid #ddd;text-align:right}
th{background:#f4f4f4} td.name,th.name{text-align:left} tr.avg td{font-weight:600;background:#fafafa}
.tiles{display:flex;flex-wrap:wrap;gap:.8em} .tile{border:1px solid #ddd;border-radius:6px;padding:.5em 1em}
.tile b{display:block;font-size:1.4em} .muted{color:#666;font-size:.9em}
.charts{display:flex;flex-wrap:wrap;gap:1em} svg{background:#fff}
table.confusion td{min-width:2.2em;text-align:center} table.confusion th{font-size:.85em}
.gallery{display:flex;flex-wrap:wrap;gap:.6em} figure{margin:0;width:%dpx;font-size:.8em;word-wrap:break-word}
figure img{width:100%%;display:block;border:1px solid #ccc} figcaption{margin-top:.2em}
.settings td{text-align:left;font-family:monospace}
@media print{body{max-width:none;margin:0} h2{page-break-after:avoid} figure,table,svg{page-break-inside:avoid}}
""" % (2 * THUMB_PX + 8)


def esc(value: Any) -> str:
    """Text made safe for HTML (content and attribute values)."""
    return html.escape(str(value), quote=True)


def _pct(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.1%}"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def data_uri(image, fmt: str = "PNG") -> str:
    """A PIL image as a ``data:`` URI."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=85) if fmt == "JPEG" else image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- charts (inline SVG)


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _finite(xs: Sequence[float], ys: Sequence[Any]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in zip(xs, ys)
            if isinstance(y, (int, float)) and math.isfinite(float(y))]


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[Any]]], x_label: str = "epoch",
               log_y: bool = False, width: int = 340, height: int = 220) -> str:
    """An SVG line chart of ``(name, xs, ys)`` series; non-finite points are left out."""
    pts = [(name, _finite(xs, ys)) for name, xs, ys in series]
    if log_y:
        pts = [(name, [(x, math.log10(y)) for x, y in p if y > 0]) for name, p in pts]
    pts = [(name, p) for name, p in pts if p]
    if not pts:
        return ""
    xs = [x for _, p in pts for x, _ in p]
    ys = [y for _, p in pts for _, y in p]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    left, right, top, bottom = 52, 10, 24 + 12 * len(pts), 34
    height += 12 * len(pts)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{esc(title)}"><text x="{width / 2}" y="15" text-anchor="middle" font-size="13">'
           f'{esc(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           f'fill="none" stroke="#999"/>']
    for t in _ticks(y0, y1):
        label = f"{10 ** t:.0e}" if log_y else f"{t:.3g}"
        out.append(f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
    whole = all(float(x).is_integer() for x in xs) and x1 - x0 <= 10
    for t in (range(int(x0), int(x1) + 1) if whole else _ticks(x0, x1)):
        out.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 13}" text-anchor="middle" font-size="10">'
                   f'{t:.3g}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle" font-size="10">{esc(x_label)}</text>')
    for k, (name, p) in enumerate(pts):
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>')
        if len(p) == 1:
            out.append(f'<circle cx="{sx(p[0][0]):.1f}" cy="{sy(p[0][1]):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<text x="{left}" y="{32 + 12 * k}" font-size="10" fill="{colour}">&#9632; {esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def reliability_chart(tables: Sequence[tuple[str, list[dict], float]], size: int = 300) -> str:
    """The reliability diagram: accuracy per confidence bin (bars, one colour per table) against
    the diagonal of perfect calibration; the legend gives each table's ECE."""
    left, bottom, top, right = 40, 34, 24 + 12 * len(tables), 10
    height = size + 12 * len(tables)
    w, h = size - left - right, height - top - bottom
    sx = lambda v: left + v * w  # noqa: E731
    sy = lambda v: height - bottom - v * h  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{height}" role="img" '
           f'aria-label="reliability diagram"><text x="{size / 2}" y="15" text-anchor="middle" font-size="13">'
           f'Reliability</text><rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
           f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#888" stroke-dasharray="4 3"/>']
    for t in _ticks(0.0, 1.0):
        out.append(f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">{t:.2g}</text>'
                   f'<text x="{sx(t):.1f}" y="{height - bottom + 13}" text-anchor="middle" font-size="10">{t:.2g}</text>')
    out.append(f'<text x="{size / 2}" y="{height - 4}" text-anchor="middle" font-size="10">confidence</text>')
    for k, (name, table, ece) in enumerate(tables):
        colour = COLOURS[k % len(COLOURS)]
        share = 1.0 / max(1, len(tables))
        for row in table:
            if row["count"]:
                x = sx(row["lo"] + (row["hi"] - row["lo"]) * share * k)
                bw = (row["hi"] - row["lo"]) * w * share
                out.append(f'<rect x="{x:.1f}" y="{sy(row["accuracy"]):.1f}" width="{bw:.1f}" '
                           f'height="{row["accuracy"] * h:.1f}" fill="{colour}" fill-opacity="0.6">'
                           f'<title>{row["lo"]:.2f}-{row["hi"]:.2f}: {row["count"]} images, accuracy '
                           f'{row["accuracy"]:.1%}, confidence {row["confidence"]:.1%}</title></rect>')
        out.append(f'<text x="{left}" y="{32 + 12 * k}" font-size="10" fill="{colour}">&#9632; {esc(name)}: '
                   f'ECE {ece:.3f}</text>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------- sections


def _section(title: str, body: str, note: str = "") -> str:
    if not body:
        return ""
    return f"<section><h2>{esc(title)}</h2>{f'<p class=muted>{esc(note)}</p>' if note else ''}{body}</section>"


def _tiles(ev) -> str:
    m = ev.metrics
    tiles = [("accuracy (top-1)", _pct(m["accuracy"])), ("top-5 accuracy", _pct(m.get("top5_accuracy"))),
             ("macro F1", _num(m["macro"]["f1"])), ("ECE", _num(m["ece"])), ("images", f"{m['n']:,}"),
             ("classes", str(len(ev.classes))), ("temperature", _num(ev.temperature, 2))]
    if m.get("top5_accuracy") is None:
        tiles.pop(1)
    return "<div class=tiles>" + "".join(f"<div class=tile><b>{esc(v)}</b>{esc(k)}</div>" for k, v in tiles) + "</div>"


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), sub)
    else:
        yield prefix, value


def settings_table(config: Any) -> str:
    """The run's config as dotted keys and values (the sections that shape a run)."""
    if config is None:
        return ""
    from transfer_gui import config as config_mod

    data = config_mod.to_dict(config) if not isinstance(config, dict) else config
    rows = [(k, v) for section in SETTING_SECTIONS if section in data for k, v in _flatten(section, data[section])]
    return "<table class=settings>" + "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>"


def training_curves(history: list[dict]) -> str:
    """Loss, accuracy and learning rate per epoch (from metrics.jsonl)."""
    if not history:
        return ""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    col = lambda key: [h.get(key) for h in history]  # noqa: E731
    groups = sorted({g for h in history for g in (h.get("lrs") or {})})
    lrs = [(g, epochs, [(h.get("lrs") or {}).get(g) for h in history]) for g in groups]
    charts = [line_chart("loss", [("train", epochs, col("train_loss")), ("validation", epochs, col("val_loss"))]),
              line_chart("accuracy", [("train", epochs, col("train_acc")), ("validation", epochs, col("val_acc"))]),
              line_chart("learning rate (log)", lrs, log_y=True) if lrs else ""]
    return "<div class=charts>" + "".join(charts) + "</div>"


def per_class_table(ev) -> str:
    m = ev.metrics
    head = "<tr><th class=name>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = [f"<tr><td class=name>{esc(name)}</td><td>{_num(r['precision'])}</td><td>{_num(r['recall'])}</td>"
            f"<td>{_num(r['f1'])}</td><td>{r['support']}</td></tr>" for name, r in m["per_class"].items()]
    for label in ("macro", "weighted"):
        a = m[label]
        rows.append(f"<tr class=avg><td class=name>{label} average</td><td>{_num(a['precision'])}</td>"
                    f"<td>{_num(a['recall'])}</td><td>{_num(a['f1'])}</td><td>{m['n']}</td></tr>")
    top5 = m.get("top5_accuracy")
    rows.append(f"<tr class=avg><td class=name>accuracy</td><td colspan=4>top-1 {_pct(m['accuracy'])}"
                f"{'' if top5 is None else ' · top-5 ' + _pct(top5)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _cell_colour(share: float, diagonal: bool) -> str:
    """White to blue (right) or white to red (wrong) by the row share."""
    share = min(max(share, 0.0), 1.0)
    r, g, b = (31, 119, 180) if diagonal else (214, 39, 40)
    mix = lambda c: int(round(255 - (255 - c) * share))  # noqa: E731
    return f"#{mix(r):02x}{mix(g):02x}{mix(b):02x}"


def confusion_table(confusion: list[list[int]], classes: Sequence[str]) -> str:
    """Rows the true class, columns the predicted one, each cell coloured by its share of the row."""
    head = "<tr><th class=name>true \\ predicted</th>" + "".join(f"<th>{esc(c)}</th>" for c in classes) + "</tr>"
    rows = []
    for t, row in enumerate(confusion):
        total = sum(row) or 1
        cells = "".join(
            f'<td style="background:{_cell_colour(v / total, t == p)};color:{"#fff" if v / total > 0.6 else "#000"}"'
            f' title="{esc(classes[t])} as {esc(classes[p])}: {v}">{v}</td>' for p, v in enumerate(row))
        rows.append(f"<tr><th class=name>{esc(classes[t])}</th>{cells}</tr>")
    return f"<table class=confusion>{head}{''.join(rows)}</table>"


def confusion_image(confusion: list[list[int]], cell: int = 0) -> str:
    """A heat map of the row-normalised confusion matrix as an inline PNG (for many classes)."""
    from PIL import Image

    m = np.asarray(confusion, dtype=np.float64)
    n = m.shape[0]
    cell = cell or max(2, min(12, 900 // max(1, n)))
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    rgb = np.empty((n, n, 3), dtype=np.uint8)
    for t in range(n):
        for p in range(n):
            code = _cell_colour(share[t, p], t == p)
            rgb[t, p] = [int(code[i:i + 2], 16) for i in (1, 3, 5)]
    image = Image.fromarray(rgb).resize((n * cell, n * cell), Image.NEAREST)
    return (f'<img alt="confusion heat map" src="{data_uri(image)}" style="image-rendering:pixelated;'
            f'max-width:100%"><p class=muted>Rows are the true classes, columns the predicted ones, in the order '
            f'of the per-class table; blue is right, red is wrong, darker is a larger share of the row.</p>')


def reliability_section(ev) -> str:
    tables = []
    before = ev.uncalibrated_probs()
    if before is not None and not math.isclose(ev.temperature, 1.0):
        tables.append(("temperature 1", metrics.reliability(before, ev.labels), metrics.ece(before, ev.labels)))
    tables.append((f"temperature {ev.temperature:.2f}", metrics.reliability(ev.probs, ev.labels), ev.metrics["ece"]))
    note = ""
    cal = ev.calibration or {}
    if "ece_before" in cal and "ece_after" in cal:
        note = (f"<p class=muted>Fitted on {esc(cal.get('fitted_on', 'validation'))} ({esc(cal.get('n', '?'))} "
                f"images): temperature {_num(cal.get('temperature'), 2)}, ECE {_num(cal['ece_before'])} before, "
                f"{_num(cal['ece_after'])} after.</p>")
    return reliability_chart(tables) + note


def most_confused_list(ev, limit: int = 10) -> str:
    pairs = metrics.most_confused(ev.metrics["confusion"], ev.classes)[:limit]
    if not pairs:
        return ""
    return "<table><tr><th class=name>true</th><th class=name>predicted as</th><th>images</th></tr>" + "".join(
        f"<tr><td class=name>{esc(t)}</td><td class=name>{esc(p)}</td><td>{c}</td></tr>" for t, p, c in pairs) + "</table>"


def _thumb(image) -> str:
    image = image.convert("RGB")
    image.thumbnail((THUMB_PX, THUMB_PX))
    return data_uri(image, "JPEG")


def _figure(ev, i: int, heatmap_for: Callable[[str], Any] | None) -> str:
    from transfer_gui.engine.imageio import ImageError, open_image

    path = ev.paths[i]
    try:
        images = [f'<img alt="{esc(path)}" src="{_thumb(open_image(path, reduce_for=THUMB_PX))}">']
    except (ImageError, OSError, ValueError):
        images = ["<p class=muted>(the image can no longer be read)</p>"]
    overlay = heatmap_for(path) if heatmap_for is not None else None
    if overlay is not None:
        images.append(f'<img alt="heat map of {esc(path)}" src="{_thumb(overlay)}">')
    true, pred = ev.classes[int(ev.labels[i])], ev.classes[int(ev.preds[i])]
    style = ' style="width:%dpx"' % THUMB_PX if overlay is None else ""
    return (f'<figure{style}><div style="display:flex;gap:4px">{"".join(images)}</div><figcaption>'
            f'<b>{esc(true)}</b> taken for <b>{esc(pred)}</b> ({ev.confidences[i]:.1%})<br>'
            f'<span class=muted>{esc(path)}</span></figcaption></figure>')


def gallery_size(ev, limit: int = GALLERY_MAX) -> int:
    """How many mistakes the report's gallery shows (each one heat map, when drawn)."""
    return min(int(np.count_nonzero(ev.preds != ev.labels)), limit)


def mistakes_gallery(ev, heatmap_for: Callable[[str], Any] | None = None, limit: int = GALLERY_MAX) -> str:
    """The most confident mistakes first, with thumbnails (and heat maps when given)."""
    wrong = np.flatnonzero(ev.preds != ev.labels)
    if wrong.size == 0:
        return "<p>No mistakes.</p>" if len(ev.paths) else ""
    order = wrong[np.argsort(-ev.confidences[wrong], kind="stable")][:limit]
    how = getattr(heatmap_for, "method", "")
    maps = f" Heat maps ({esc(how)}) of the predicted class: red is where the model found the most evidence." \
        if heatmap_for is not None and how else ""
    shown = f"<p class=muted>{len(order)} of {wrong.size} mistakes, the most confident first.{maps}</p>"
    return shown + "<div class=gallery>" + "".join(_figure(ev, int(i), heatmap_for) for i in order) + "</div>"


def skipped_list(skipped: list[dict]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{esc(s.get('path'))}: {esc(s.get('reason'))}</li>" for s in skipped[:SKIPPED_MAX])
    more = f"<p class=muted>… and {len(skipped) - SKIPPED_MAX} more</p>" if len(skipped) > SKIPPED_MAX else ""
    return f"<ul>{items}</ul>{more}"


# ----------------------------------------------------------------------------- the page


def _header(ev) -> str:
    where = {"val": "the run's validation set", "test": "the run's test set"}.get(ev.which, ev.data_dir or "a folder")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"<h1>Evaluation report</h1><p class=muted>Model: {esc(ev.source)}<br>Images: {esc(where)}"
            f"<br>Written {esc(stamp)} by transfer_gui</p>")


def build_html(ev, heatmap_for: Callable[[str], Any] | None = None) -> str:
    """The whole page for the evaluation ``ev`` (see the module docstring)."""
    many = len(ev.classes) > TABLE_MAX_CLASSES
    confusion = confusion_image(ev.metrics["confusion"]) if many else confusion_table(ev.metrics["confusion"], ev.classes)
    parts = [
        _header(ev), _tiles(ev),
        _section("Run settings", settings_table(ev.config)),
        _section("Training", training_curves(ev.history)),
        _section("Per class", per_class_table(ev), "Precision of a class never predicted, and recall of a class "
                                                   "with no image, are shown as 0."),
        _section("Confusion matrix", confusion),
        _section("Calibration", reliability_section(ev), "Bars: the accuracy of the images in each confidence bin; "
                                                         "on the dashed diagonal the confidence would be right."),
        _section("Most confused", most_confused_list(ev)),
        _section("Mistakes", mistakes_gallery(ev, heatmap_for)),
        _section("Files that could not be read", skipped_list(ev.skipped)),
    ]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Evaluation report – {esc(ev.source)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")
