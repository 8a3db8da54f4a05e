"""Figures a person looks at: the confusion matrix with class names and counts (TensorBoard
and PNGs beside report.md) and model inputs as grey strips of their dates. matplotlib with
the Agg backend: no display needed."""

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


def _figure_pixels(fig):
    """A matplotlib figure -> uint8 RGB image [H, W, 3] (Agg canvas; the figure is closed)."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels


def confusion_figure(matrix, class_names, title=None):
    """Confusion matrix [C, C] (rows true, columns predicted) -> a matplotlib figure: cells
    shaded by row fraction (every true class reads alike), each with its count and the row
    percentage, class names on both axes."""
    matrix = np.asarray(matrix, float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    size = 1.1 + 0.75 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 0.8, size), dpi=100)
    ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            colour = "white" if rows[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}\n{100 * rows[i, j]:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_image(matrix, class_names, title=None):
    """confusion_figure as a uint8 RGB image [H, W, 3] (TensorBoard)."""
    return _figure_pixels(confusion_figure(matrix, class_names, title))


def save_confusion_png(path, matrix, class_names, title=None):
    """confusion_figure written as a PNG (beside report.md)."""
    fig = confusion_figure(matrix, class_names, title)
    fig.savefig(path)
    plt.close(fig)


def example_dates(images, dt=None, max_dates=8):
    """Model inputs -> (per-date images [N, D, H, W], days since the first shown date [N, D]).

    images: triplets [N, H, W, 3] (the three dates are the channels) or sequences of sliding
    triplets [N, T, H, W, 3] (date k is channel 0 of step k; the last step adds two more);
    dt: [N, T, 2] years between the dates of each triplet (sequences) or None.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        per_date = np.moveaxis(images, -1, 1)
        days = np.full(per_date.shape[:2], np.nan)
    else:
        per_date = np.concatenate(
            [images[..., 0], np.moveaxis(images[:, -1], -1, 1)[:, 1:]], axis=1
        )
        gaps = np.concatenate([np.asarray(dt)[:, :, 0], np.asarray(dt)[:, -1:, 1]], axis=1) * 365.25
        days = np.concatenate([np.zeros((len(gaps), 1)), np.cumsum(gaps, axis=1)], axis=1)
    return per_date[:, :max_dates], days[:, :max_dates]


def example_strip(dates, zoom=1):
    """Per-date images [D, H, W] of one object -> a grey strip [H*zoom, D*(W+2)*zoom] in [0, 1]:
    the dates side by side, one asinh stretch for the whole strip (so changes in brightness
    show): the sky (median) black, 3 sky sigmas (MAD) the knee, the brightest pixel white."""
    dates = np.asarray(dates, np.float32)
    sky = float(np.median(dates))
    sigma = max(1.4826 * float(np.median(np.abs(dates - sky))), 1e-6)
    stretched = np.arcsinh(np.clip(dates - sky, 0.0, None) / (3.0 * sigma))
    stretched /= max(float(stretched.max()), 1e-6)
    separator = np.ones((dates.shape[1], 2), np.float32)
    strip = np.concatenate([part for d in stretched for part in (d, separator)][:-1], axis=1)
    return np.kron(strip, np.ones((zoom, zoom), np.float32)) if zoom > 1 else strip
