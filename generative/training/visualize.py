"""PNG pictures of samples: image grids and, for 2-D point sets, scatter plots (Pillow only)."""

import math

import numpy as np
from PIL import Image, ImageDraw


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


def save_png(path: str, samples: np.ndarray, *, scale: int = 4) -> None:
    """Saves NHWC image samples as an enlarged grid, or [N, 2] points as a scatter plot."""
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
