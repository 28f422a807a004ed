"""Filters (lecture §4.1): the filter panel on a photo (shared with ``python -m fastdl
filters``) and the frequency response of the low-pass and Sobel kernels, measured by
filtering a unit impulse with fastdl.image and taking its discrete Fourier transform."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._plotting import pyplot, result_type, save

__all__ = ["to_gray", "filter_panel", "sample_photo", "frequency_response",
           "filter_frequency_responses", "plot_frequency_responses"]


def sample_photo():
    """scikit-learn's bundled china.jpg (no download) and its title."""
    from sklearn.datasets import load_sample_image
    return load_sample_image("china.jpg"), "china.jpg (scikit-learn)"


def to_gray(photo) -> np.ndarray:
    """uint8 gray image of a uint8 or [0, 1]-float photo, RGB(A) or already gray
    (ITU-R 601 luma: 0.299 R + 0.587 G + 0.114 B)."""
    photo = np.asarray(photo)
    if photo.dtype != np.uint8:  # PNGs read as floats in [0, 1]
        photo = np.clip(np.round(photo * 255), 0, 255).astype(np.uint8)
    if photo.ndim == 3:
        return np.round(photo[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return photo


def filter_panel(photo, path, title: str = "photo", seed: int = 0) -> str:
    """Write a PNG panel to path: the photo, its 5x5 mean, a copy with 10% salt-and-pepper
    noise and its 3x3 median, the Sobel gradient magnitude and the course low-pass, all by
    fastdl.image."""
    from .. import image
    plt = pyplot()
    photo = np.asarray(photo)
    if photo.dtype != np.uint8:
        photo = np.clip(np.round(photo * 255), 0, 255).astype(np.uint8)
    if photo.ndim == 3:
        photo = photo[..., :3]
    gray = to_gray(photo)
    rng = np.random.default_rng(seed)
    noisy = gray.copy()
    spots = rng.random(gray.shape)
    noisy[spots < 0.05], noisy[spots > 0.95] = 0, 255
    panels = [(photo, title), (image.uniform_filter(gray, 5), "mean 5x5"),
              (noisy, "salt and pepper 10%"), (image.median_filter(noisy, 3), "median 3x3"),
              (image.gradient_magnitude(gray.astype(np.float32)), "Sobel gradient magnitude"),
              (image.lowpass(gray), "low-pass [[0,1,0],[1,2,1],[0,1,0]]/6")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (picture, name) in zip(axes.ravel(), panels):
        ax.imshow(picture, cmap=None if picture.ndim == 3 else "gray")
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path, dpi=80)


def frequency_response(filter_function, size: int = 64) -> np.ndarray:
    """|H(ω)| of a linear, shift-invariant filter on an size x size grid of frequencies:
    filter a unit impulse (periodic boundary, mode='wrap') and take the magnitude of its
    2-D DFT. Rows are ω_y, columns ω_x, both fftshift-ed to run from -π to π (-0.5 to 0.5
    cycles per pixel); the DC term sits at [size // 2, size // 2]."""
    impulse = np.zeros((size, size))
    impulse[0, 0] = 1.0
    response = np.asarray(filter_function(impulse, mode="wrap"))
    return np.abs(np.fft.fftshift(np.fft.fft2(response)))


def _responses(size: int) -> dict:
    from .. import image
    return {
        "low-pass [[0,1,0],[1,2,1],[0,1,0]]/6": frequency_response(image.lowpass, size),
        "mean 5x5": frequency_response(lambda x, mode: image.uniform_filter(x, 5, mode=mode), size),
        "Gaussian σ=1": frequency_response(lambda x, mode: image.gaussian_filter(x, 1.0, mode=mode),
                                           size),
        "Sobel d/dx": frequency_response(lambda x, mode: image.sobel(x, axis=-1, mode=mode), size),
        "Sobel d/dy": frequency_response(lambda x, mode: image.sobel(x, axis=-2, mode=mode), size),
    }


def _plot(result, path):
    """|H| images of the low-pass and both Sobel kernels, and a cut along ω_x."""
    plt = pyplot()
    size = result["size"]
    frequencies = np.fft.fftshift(np.fft.fftfreq(size))
    extent = [frequencies[0], frequencies[-1], frequencies[0], frequencies[-1]]
    responses = result["responses"]
    shown = ["low-pass [[0,1,0],[1,2,1],[0,1,0]]/6", "Sobel d/dx", "Sobel d/dy"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5))
    for ax, name in zip(axes.ravel(), shown):
        picture = ax.imshow(responses[name], extent=extent, origin="lower", cmap="viridis")
        ax.set_title(f"|H| of {name}")
        ax.set_xlabel("ω_x (cycles / pixel)")
        ax.set_ylabel("ω_y (cycles / pixel)")
        fig.colorbar(picture, ax=ax, shrink=0.85)
    ax = axes[1, 1]
    center = size // 2
    for name, response in responses.items():
        if name == "Sobel d/dy":
            continue
        gain = response[center, :]  # ω_y = 0
        scale = gain.max() if name.startswith("Sobel") else 1.0
        label = name + (f" (÷ {scale:g})" if scale != 1.0 else "")
        ax.plot(frequencies, gain / scale, marker=".", markersize=3, label=label)
    ax.axvline(0.0, color="k", lw=0.5)
    ax.set_xlabel("ω_x (cycles / pixel), ω_y = 0; ±0.5 = Nyquist")
    ax.set_ylabel("|H|")
    ax.set_title("cut along ω_x: smoothers pass DC, Sobel blocks it")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    return save(fig, path)


FrequencyResponses = result_type("FrequencyResponses", _plot)
plot_frequency_responses = _plot


def filter_frequency_responses(size: int = 64) -> FrequencyResponses:
    """|H| of the low-pass, 5x5 mean, Gaussian (σ=1) and Sobel filters of fastdl.image on a
    size x size frequency grid. Returns {'size', 'responses': {name: (size, size)},
    'dc': {name: |H(0, 0)|}, 'nyquist': {name: |H(π, π)|}}; .plot(path) draws them."""
    responses = _responses(size)
    center = size // 2
    return FrequencyResponses(
        size=size, responses=responses,
        dc={k: float(v[center, center]) for k, v in responses.items()},
        nyquist={k: float(v[0, 0]) for k, v in responses.items()})
