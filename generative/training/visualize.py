"""PNG pictures (numpy + Pillow only): sample image grids, 2-D scatter plots, networkx graph grids
and training curves from metrics records."""

import math

import networkx as nx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FONT = ImageFont.load_default()
_HEADLINE = ("fd_ratio", "swd", "mmd", "fd", "precision", "recall", "coverage", "density")
_DESCRIPTORS = ("degree", "clustering", "orbit", "spectral")


def image_grid(images: np.ndarray, *, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 [rows * (H + pad) + pad, columns * (W + pad) + pad, C] mosaic of NHWC images in [-1,
    1]."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {images.shape}")
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.uint8)
    pixels = np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def scatter_plot(points: np.ndarray, *, size: int = 384, extent: float | None = None) -> np.ndarray:
    """uint8 [size, size, 3] picture of 2-D points (black dots on white), square extent around 0."""
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {points.shape}")
    finite = points[np.all(np.isfinite(points), axis=1)]
    if extent is None:
        extent = float(np.quantile(np.abs(finite), 0.995)) * 1.1 if finite.size else 1.0
    picture = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(picture)
    pixels = (finite / max(extent, 1e-6) * 0.5 + 0.5) * (size - 1)
    for x, y in pixels:
        draw.point((float(x), float(size - 1 - y)), fill=(0, 0, 0))
    return np.asarray(picture)


def _layout(g: nx.Graph, cell: int, margin: int) -> dict:
    """Node -> (x, y) pixel position of spring_layout(g, seed=0) fitted into a cell, aspect kept."""
    if g.number_of_nodes() == 0:
        return {}
    positions = nx.spring_layout(g, seed=0)
    nodes = list(positions)
    xy = np.array([positions[v] for v in nodes], np.float64).reshape(-1, 2)
    low, high = xy.min(0), xy.max(0)
    span = max(float((high - low).max()), 1e-9)
    inner = cell - 1 - 2 * margin
    pixels = (xy - (low + high) / 2) / span * inner + (cell - 1) / 2
    pixels[:, 1] = cell - 1 - pixels[:, 1]
    return {v: (float(x), float(y)) for v, (x, y) in zip(nodes, pixels)}


def graph_grid(graphs, *, cell: int = 96, columns: int | None = None) -> np.ndarray:
    """uint8 [rows * cell, columns * cell, 3] picture of networkx graphs, one per faintly framed
    cell: grey edges and black node dots on white, laid out by spring_layout(g, seed=0); "empty"
    for 0 nodes."""
    graphs = list(graphs)
    columns = columns or max(1, math.ceil(math.sqrt(len(graphs))))
    rows = max(1, math.ceil(len(graphs) / columns))
    picture = Image.new("RGB", (columns * cell, rows * cell), "white")
    draw = ImageDraw.Draw(picture)
    margin = max(2, cell // 12)
    for i, g in enumerate(graphs):
        r, col = divmod(i, columns)
        left, top = col * cell, r * cell
        draw.rectangle((left, top, left + cell - 1, top + cell - 1), outline=(235, 235, 235))
        if g.number_of_nodes() == 0:
            draw.text((left + margin, top + margin), "empty", fill=(160, 160, 160), font=_FONT)
            continue
        where = {v: (x + left, y + top) for v, (x, y) in _layout(g, cell, margin).items()}
        for u, v in g.edges():
            if u != v:
                draw.line([where[u], where[v]], fill=(150, 150, 150), width=1)
        radius = 2.0 if g.number_of_nodes() <= 64 else 1.0
        for x, y in where.values():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(0, 0, 0))
    return np.asarray(picture)


def _series(records, kind: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the finite scalar `name` in the records of `kind`, in record order."""
    steps, values = [], []
    for record in records:
        step, value = record.get("step"), record.get(name)
        if record.get("kind") != kind or not (_is_scalar(step) and _is_scalar(value)):
            continue
        if math.isfinite(value) and math.isfinite(step):
            steps.append(float(step))
            values.append(float(value))
    return np.array(steps), np.array(values)


def _is_scalar(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval_names(records, limit: int = 6) -> list[str]:
    """Names of the scalar eval metrics: headline ones first, graph MMDs next, floors last, the
    rest in order of first appearance; at most `limit`."""
    seen = {}
    for record in records:
        if record.get("kind") != "eval":
            continue
        for name, value in record.items():
            if name not in ("step", "kind") and _is_scalar(value) and math.isfinite(value):
                seen.setdefault(name, len(seen))

    def rank(name: str) -> tuple:
        if name in _HEADLINE:
            return (_HEADLINE.index(name), 0)
        for i, word in enumerate(_DESCRIPTORS):
            if word in name:
                return (len(_HEADLINE) + i, seen[name])
        return (100 if "floor" in name else 50, seen[name])

    return sorted(seen, key=rank)[:limit]


def _smooth(values: np.ndarray) -> np.ndarray:
    """Bias-corrected exponential moving average, window about 2% of the points (none below 50)."""
    beta = min(0.98, 1.0 - 1.0 / max(1.0, len(values) / 50.0))
    out, average, weight = np.empty_like(values), 0.0, 0.0
    for i, value in enumerate(values):
        average = beta * average + (1.0 - beta) * value
        weight = beta * weight + (1.0 - beta)
        out[i] = average / weight
    return out


def _text(value: float) -> str:
    return f"{value:.4g}"


def _label(draw: ImageDraw.ImageDraw, xy, text: str, *, anchor: str) -> None:
    """Black text placed by hand (bitmap fonts ignore `anchor`): "rm" right-middle, "ma" top-centre,
    clamped into the picture."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=_FONT)
    x, y = xy
    x = x - (x1 - x0) if anchor[0] == "r" else x - (x1 - x0) / 2
    y = y - (y1 + y0) / 2 if anchor[1] == "m" else y - y0
    width = draw.im.size[0]
    x = min(max(x, 0), width - (x1 - x0) - 1)
    draw.text((x, y), text, fill=(0, 0, 0), font=_FONT)


def _panel(title: str, steps, values, width: int, height: int, *, smooth: bool) -> Image.Image:
    """One curve panel: title, left and bottom axes, min/max value and first/last step labels;
    raw points light, the smoothed line (train) or dots (eval) dark; log y when all positive."""
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    log = bool(np.all(values > 0)) and smooth
    y = np.log10(values) if log else values
    draw.text((6, 3), f"{title} (log scale)" if log else title, fill=(0, 0, 0), font=_FONT)
    labels = [_text(values.min()), _text(values.max())]
    left = 10 + max(draw.textlength(s, font=_FONT) for s in labels)
    top, right, bottom = 20, width - 12, height - 18
    low, high = float(y.min()), float(y.max())
    pad = (high - low) * 0.05 or max(abs(low) * 0.05, 0.05)
    low, high = low - pad, high + pad
    first, last = float(steps.min()), float(steps.max())

    def pixel(s, v):
        sx = (s - first) / (last - first) if last > first else np.full_like(s, 0.5)
        sy = (v - low) / (high - low)
        return left + 6 + sx * (right - left - 12), bottom - sy * (bottom - top)

    xs, ys = pixel(steps, y)
    for tick, value in ((y.min(), labels[0]), (y.max(), labels[1])):
        ty = float(pixel(np.array([first]), np.array([tick]))[1][0])
        draw.line([(left, ty), (right, ty)], fill=(232, 232, 232))
        draw.line([(left - 3, ty), (left, ty)], fill=(0, 0, 0))
        _label(draw, (left - 5, ty), value, anchor="rm")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=(0, 0, 0))
    for sx, s in ((xs.min(), first), (xs.max(), last)):
        draw.line([(sx, bottom), (sx, bottom + 3)], fill=(0, 0, 0))
        _label(draw, (sx, bottom + 4), str(int(s)), anchor="ma")
    points = list(zip(xs.tolist(), ys.tolist()))
    if len(points) > 1:
        draw.line(points, fill=(170, 195, 235) if smooth else (120, 150, 210), width=1)
    if smooth and len(points) > 1:
        line = list(zip(xs.tolist(), pixel(steps, _smooth(y))[1].tolist()))
        draw.line(line, fill=(20, 60, 160), width=2)
    if not smooth or len(points) == 1:
        for px, py in points:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=(20, 60, 160))
    return picture


def training_curves(records, *, width: int = 640, height: int | None = None) -> np.ndarray:
    """uint8 [H, W, 3] picture of metrics records (see writers.read_metrics), panels stacked: the
    train loss against step (log y when positive, EMA-smoothed line over the raw curve), then up
    to 6 scalar eval metrics. H is `height` if given, else 160 per panel; "no metrics yet" when
    there is nothing to draw."""
    records = list(records)
    panels = [("loss", *_series(records, "train", "loss"), True)]
    panels += [(name, *_series(records, "eval", name), False) for name in _eval_names(records)]
    panels = [panel for panel in panels if len(panel[1])]
    if not panels:
        picture = Image.new("RGB", (width, height or 40), "white")
        ImageDraw.Draw(picture).text((8, 8), "no metrics yet", fill=(0, 0, 0), font=_FONT)
        return np.asarray(picture)
    total = height or 160 * len(panels)
    sizes = [total // len(panels)] * len(panels)
    sizes[-1] += total - sum(sizes)
    picture = Image.new("RGB", (width, total), "white")
    top = 0
    for (title, steps, values, smooth), size in zip(panels, sizes):
        picture.paste(_panel(title, steps, values, width, size, smooth=smooth), (0, top))
        if top:
            ImageDraw.Draw(picture).line([(0, top), (width - 1, top)], fill=(200, 200, 200))
        top += size
    return np.asarray(picture)


def save_png(path: str, samples, *, scale: int = 4) -> None:
    """Saves NHWC image samples as an enlarged grid, [N, 2] points as a scatter plot, or a list or
    tuple of networkx graphs as graph_grid (already full size: `scale` is not used)."""
    if isinstance(samples, list | tuple) and all(isinstance(g, nx.Graph) for g in samples):
        Image.fromarray(graph_grid(samples)).save(path)
        return
    samples = np.asarray(samples)
    if samples.ndim == 2:
        picture = Image.fromarray(scatter_plot(samples))
    else:
        grid = image_grid(samples)
        if grid.shape[-1] == 1:
            grid = grid[..., 0]
        picture = Image.fromarray(grid)
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)


def save_curves_png(path: str, records) -> None:
    """Saves training_curves(records) (records as writers.read_metrics returns them) as a PNG."""
    Image.fromarray(training_curves(records)).save(path)
