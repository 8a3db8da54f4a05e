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


def save_early_png(path, early_f1, title=None):
    """ "F1 versus nights observed" as a PNG: one panel per split, a line per model, mean F1
    (%) against the number of observation dates (the whole sequence drawn as a dashed level).

    early_f1: {model: {split: {early.label(N): {"mean_f1": ...}}}} (report.json's "early_f1").
    """
    splits = sorted({s for by_split in early_f1.values() for s in by_split}, reverse=True)
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(5.2 * max(1, len(splits)), 3.8))
    axes = np.atleast_1d(axes)
    for ax, split in zip(axes, splits):
        for i, (model, by_split) in enumerate(early_f1.items()):
            points = by_split.get(split, {})
            numbers = sorted(int(k) for k in points if k != "all")
            colour = f"C{i}"
            if numbers:
                ax.plot(
                    numbers,
                    [100 * points[str(n)]["mean_f1"] for n in numbers],
                    "o-",
                    color=colour,
                    label=model,
                )
            if "all" in points:
                ax.axhline(100 * points["all"]["mean_f1"], color=colour, ls="--", lw=0.8)
        ax.set_xlabel("observation dates (nights) used, from the first")
        ax.set_ylabel("mean max-F1 over classes (%)")
        ax.set_title(f"{split} (dashed: all dates)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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


def example_image(dates, title):
    """Per-date images [D, H, W] of one object -> uint8 RGB image [h, w, 3]: example_strip
    with `title` written above it (so the class and days travel with the picture)."""
    strip = example_strip(dates)
    height = 1.1 + 2.2 * strip.shape[0] / strip.shape[1] * 6.0
    fig, ax = plt.subplots(figsize=(6.0, height), dpi=100)
    ax.imshow(strip, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, wrap=True)
    fig.tight_layout()
    return _figure_pixels(fig)


def same_size(images):
    """uint8 RGB images of different sizes -> the same images padded (white) to the largest."""
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    out = []
    for i in images:
        padded = np.full((h, w, 3), 255, np.uint8)
        padded[: i.shape[0], : i.shape[1]] = i
        out.append(padded)
    return out


def save_reliability_png(path, calibration_by_split, title=None):
    """Reliability diagrams before and after the temperature, one panel per split: accuracy
    against confidence of the predicted class per bin (the diagonal is calibrated), with the
    expected calibration error (ECE) in the legend.

    calibration_by_split: {split: calibration.summary output}.
    """
    splits = sorted(calibration_by_split, reverse=True)
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(4.2 * max(1, len(splits)), 4.0))
    axes = np.atleast_1d(axes)
    for ax, split in zip(axes, splits):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        for key, style in (("before", "o-"), ("after", "s--")):
            r = calibration_by_split[split][key]
            bins = r["bins"]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                style,
                label=f"{key} temperature (ECE {100 * r['ece']:.1f}%)",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (probability of the predicted class)")
        ax.set_ylabel("accuracy")
        ax.set_title(split, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
