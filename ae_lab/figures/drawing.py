"""Pure plotting functions: arrays in, RGB arrays (``H x W x 3`` uint8) or GIF frames out.

Nothing here knows about Lightning or models. Figures are drawn with matplotlib's object API on an
Agg canvas (no pyplot state, no display needed) and returned as arrays, which the callbacks write as
PNG/GIF files and log to TensorBoard.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

Array = np.ndarray


def figure_to_array(fig: Figure) -> Array:
    """Render a matplotlib figure to an ``H x W x 3`` uint8 array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def image_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> Array:
    """``(N, C, H, W)`` floats in [0, 1] to one ``H x W x 3`` uint8 mosaic, ``nrow`` images a row."""
    images = images.detach().float().cpu().clamp(0, 1)
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)  # (3, H, W)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def upscale(image: Array, factor: int) -> Array:
    """Nearest-neighbour enlargement, so 28-pixel digits stay readable in a GIF."""
    if factor <= 1:
        return image
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def pool_max_abs(matrix: Array, factor: int) -> Array:
    """``matrix`` shrunk by ``factor`` along both axes, each cell the entry of largest magnitude
    in its ``factor x factor`` block (sign kept): a one-entry-wide diagonal stays a line."""
    if factor <= 1:
        return matrix
    n, m = matrix.shape
    padded = np.zeros((-(-n // factor) * factor, -(-m // factor) * factor), matrix.dtype)
    padded[:n, :m] = matrix
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(*blocks.shape[::2], factor * factor)
    pick = np.abs(blocks).argmax(axis=-1)
    return np.take_along_axis(blocks, pick[..., None], axis=-1)[..., 0]


def weight_product_figure(product: Array, title: str = "", max_width: int | None = None) -> Array:
    """Heatmaps of ``W_dec W_enc``: raw (diverging colours) and clipped at 0.

    Side by side, each panel gets at least one screen pixel per matrix entry, so a one-pixel-wide
    diagonal survives rendering instead of being resampled away. With ``max_width`` (a TensorBoard
    card) the panels are stacked, at most that wide, and the matrix is max-|.|-pooled to fit them
    (:func:`pool_max_abs`), which keeps the diagonal.
    """
    size = product.shape[0]
    if max_width is None:
        inches = max(5.0, 1.3 * size / 100)
        fig = Figure(figsize=(2 * inches + 1.5, inches + 0.8), dpi=100)
        raw_ax, clipped_ax = fig.subplots(1, 2)
    else:
        inches = max_width / 100
        factor = math.ceil(size / (0.7 * max_width))  # a panel is ~70% of the figure's width
        product = pool_max_abs(product, factor)
        if factor > 1:
            title = f"{title}\n(each pixel: the largest |entry| of a {factor}x{factor} block)"
        fig = Figure(figsize=(inches, 2 * 0.8 * inches + 0.9), dpi=100)
        raw_ax, clipped_ax = fig.subplots(2, 1)
    limit = float(np.abs(product).max()) or 1.0
    shown = {"interpolation": "nearest", "extent": (0, size, size, 0)}  # axes in matrix indices
    im = raw_ax.imshow(product, cmap="RdBu_r", vmin=-limit, vmax=limit, **shown)
    raw_ax.set_title("W2·W1")
    fig.colorbar(im, ax=raw_ax, fraction=0.046)
    clipped = np.clip(product, 0, None)
    im = clipped_ax.imshow(
        clipped, cmap="viridis", vmin=0, vmax=max(float(clipped.max()), 1e-12), **shown
    )
    clipped_ax.set_title("max(W2·W1, 0)")
    fig.colorbar(im, ax=clipped_ax, fraction=0.046)
    for ax in (raw_ax, clipped_ax):
        ax.set_xlabel("input pixel")
        ax.set_ylabel("output pixel")
    if title:
        fig.suptitle(title, fontsize=9 if max_width else None)
    fig.tight_layout()
    return figure_to_array(fig)


def columns_panel(
    columns: Sequence[torch.Tensor], titles: Sequence[str], scale: float = 1.0
) -> Array:
    """Image columns side by side (e.g. original | corrupted | reconstructed), one example a row."""
    if len(columns) != len(titles):
        raise ValueError("one title per column")
    n = columns[0].shape[0]
    fig = Figure(figsize=(1.3 * len(columns) * scale, 1.3 * n * scale), dpi=100)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for col, (images, title) in enumerate(zip(columns, titles, strict=True)):
        for row in range(n):
            ax = axes[row, col]
            ax.imshow(image_grid(images[row : row + 1], nrow=1, padding=0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.01, top=1 - 0.35 / n, wspace=0.05, hspace=0.05
    )
    return figure_to_array(fig)


def latent_scatter(
    codes: Array,
    labels: Array,
    class_names: Sequence[str],
    title: str,
    axis_names: Sequence[str] = ("z[0]", "z[1]"),
) -> Array:
    """2-D codes as points, coloured by class when labels are given (``labels < 0``: none)."""
    fig = Figure(figsize=(6.5, 5.5), dpi=100)
    ax = fig.subplots()
    labelled = labels >= 0
    if labelled.any():
        cmap = "tab10" if labels.max() < 10 else "tab20"
        points = ax.scatter(
            codes[labelled, 0],
            codes[labelled, 1],
            c=labels[labelled],
            cmap=cmap,
            s=4,
            alpha=0.7,
            vmin=-0.5,
            vmax=labels.max() + 0.5,
        )
        bar = fig.colorbar(points, ax=ax, ticks=np.arange(labels.max() + 1))
        if class_names:
            bar.ax.set_yticklabels(list(class_names)[: labels.max() + 1])
    if (~labelled).any():
        ax.scatter(codes[~labelled, 0], codes[~labelled, 1], s=4, alpha=0.5, color="tab:blue")
    ax.set_title(title)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    fig.tight_layout()
    return figure_to_array(fig)


def principal_axes(codes: Array) -> tuple[Array, str, tuple[str, str]]:
    """Codes projected on their first two principal components (or as they are, if 2-D), with a
    title and the axes' names."""
    if codes.shape[1] == 2:
        return codes, "latent codes", ("z[0]", "z[1]")
    centred = codes - codes.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2].T
    if axes.shape[1] < 2:  # a 1-D latent: plot against zero
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    title = f"latent codes ({codes.shape[1]}-D, first two principal components)"
    return centred @ axes, title, ("PC 1", "PC 2")


def manifold_codes(n: int, low: Sequence[float], high: Sequence[float]) -> torch.Tensor:
    """``(n*n, 2)`` codes on a regular grid, row-major as the mosaic shows them.

    ``z[0]`` grows to the right and ``z[1]`` grows upwards, as on the scatter plot's axes.
    """
    xs = torch.linspace(low[0], high[0], n)
    ys = torch.linspace(high[1], low[1], n)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)


def ping_pong(frames: Sequence[Array]) -> list[Array]:
    """Forward then back, without repeating the end frames: a loop that plays smoothly."""
    frames = list(frames)
    return frames + frames[-2:0:-1]


def grid_frames(paths: torch.Tensor, grid: int, scale: int = 1) -> list[Array]:
    """Decoded paths ``(grid*grid, steps, C, H, W)`` to frames, each a ``grid x grid`` mosaic."""
    return [upscale(image_grid(paths[:, step], nrow=grid), scale) for step in range(paths.shape[1])]


def encode_png(image: Array) -> bytes:
    """PNG bytes of an ``H x W x 3`` uint8 image (fast zlib level: figures are written often)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def encode_gif(frames: Sequence[Array], frame_ms: int = 60) -> bytes:
    """An endlessly looping animated GIF of ``H x W x 3`` uint8 frames."""
    if len(frames) < 2:
        raise ValueError("a GIF needs at least two frames")
    grey = all((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in frames)
    if grey:  # one channel: a grey palette, encoded five times faster than an adaptive RGB one
        frames = [frame[..., 0] for frame in frames]
    first, *rest = (Image.fromarray(frame) for frame in frames)
    buffer = io.BytesIO()
    first.save(
        buffer, format="GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0,
        optimize=False,
    )  # fmt: skip
    return buffer.getvalue()


def fit_width(image: Array, width: int) -> Array:
    """``image`` shrunk (area-averaged) to at most ``width`` pixels wide; as it is if narrower."""
    if image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX))


@functools.lru_cache(maxsize=8)
def label_font(size: int) -> ImageFont.FreeTypeFont:
    """matplotlib's own sans-serif (DejaVu Sans, shipped with it) at ``size`` pixels, so labels
    drawn onto images match the figures' text on every machine."""
    return ImageFont.truetype(
        font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans")), size
    )


def label_rows(image: Array, labels: Sequence[str], size: int | None = None) -> Array:
    """``image`` with a white margin on its left naming its rows: its height is split evenly
    between ``labels``, each drawn right-aligned beside the middle of its row (a mosaic's "input"
    and "reconstruction" rows). ``size``: the font's pixels; None: from the rows' height."""
    if not labels:
        raise ValueError("at least one label")
    height, width = image.shape[:2]
    row = height / len(labels)
    font = label_font(size or int(np.clip(0.42 * row, 10, 28)))
    pad = max(4, font.size // 2)
    margin = math.ceil(max(font.getlength(text) for text in labels)) + 2 * pad
    canvas = Image.new("RGB", (margin + width, height), "white")
    canvas.paste(Image.fromarray(image).convert("RGB"), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        draw.text((margin - pad, (i + 0.5) * row), text, fill=(40, 40, 40), font=font, anchor="rm")
    return np.array(canvas)
