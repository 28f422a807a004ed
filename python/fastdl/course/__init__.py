"""fastdl.course: the lecture notes' pictures, drawn from real runs of fastdl's own code.

Each experiment is a seeded function with size knobs that returns its numbers (a dict
subclass) and draws its figure with ``.plot(path)``; only the drawing needs matplotlib
(``pip install 'fastdl[plot]'``). ``build(output_dir)`` — ``python -m fastdl course`` —
runs them all and writes the PNGs and one self-contained ``index.html``.

* Optimizers (§1.2–2): ``optimizer_paths``, ``logistic_optimizers``, ``mlp_optimizers``
* Lasso vs Ridge (§1): ``lasso_ridge_paths``, ``lasso_solvers``, ``lasso_vs_ridge``
* Vanishing and exploding gradients (§3): ``gradient_flow``
* Filters (§4.1): ``filter_panel``, ``filter_frequency_responses``
* CNNs (§4.2): ``digits_cnn_features``, ``receptive_fields`` (``receptive_field``: the
  closed form; ``measured_receptive_field``: by autograd)
"""
from __future__ import annotations

import base64
import html
import os
import time
from typing import Callable, List, NamedTuple, Optional

from .cnn import (digits_cnn_features, measured_receptive_field, receptive_field,
                  receptive_fields)
from .filters import filter_frequency_responses, filter_panel, frequency_response
from .gradients import deep_mlp, gradient_flow
from .optimizers import (logistic_optimizers, mlp_optimizers, optimizer_paths, quadratic,
                         rosenbrock)
from .sparsity import lasso_ridge_paths, lasso_solvers, lasso_vs_ridge

__all__ = ["build", "FIGURES", "optimizer_paths", "logistic_optimizers", "mlp_optimizers",
           "quadratic", "rosenbrock", "lasso_ridge_paths", "lasso_solvers", "lasso_vs_ridge",
           "gradient_flow", "deep_mlp", "filter_panel", "frequency_response",
           "filter_frequency_responses", "digits_cnn_features", "receptive_fields",
           "receptive_field", "measured_receptive_field"]


class Figure(NamedTuple):
    """One figure of the course: its file, section, heading, caption, and how to make it:
    draw(path, quick) runs the experiment (smaller when quick) and writes the PNG."""
    filename: str
    section: str
    title: str
    caption: str
    draw: Callable[[str, bool], object]


def _draw_photo_panel(path, quick):
    from .filters import sample_photo
    photo, title = sample_photo()
    if quick:
        photo = photo[::4, ::4]
    return filter_panel(photo, path, title=title)


# One training run of the digits CNN feeds two figures (the features and the history);
# build() empties this before and after.
_CNN_RUNS: dict = {}


def _draw_cnn(path, quick):
    if bool(quick) not in _CNN_RUNS:
        _CNN_RUNS.clear()
        _CNN_RUNS[bool(quick)] = digits_cnn_features(epochs=2 if quick else 15)
    return _CNN_RUNS[bool(quick)]


FIGURES: List[Figure] = [
    Figure("optimizer_paths.png", "Optimizers (§1.2–2)", "Six optimizers on two 2-D functions",
           "Trajectories over the contour lines (top) and f against the step (bottom, log). On "
           "the ill-conditioned quadratic GD with step 1/L settles the steep y direction at once "
           "but crawls along the shallow x; momentum builds up speed along the valley; AdaGrad, "
           "RMSProp and Adam rescale each coordinate, which is exactly the fix for an "
           "axis-aligned valley. On Rosenbrock's curved valley momentum and Adam get furthest.",
           lambda path, quick: optimizer_paths(
               steps=(60, 300) if quick else (100, 1000)).plot(path)),
    Figure("optimizers_logistic.png", "Optimizers (§1.2–2)",
           "Logistic regression on the breast-cancer data",
           "fastdl.linear_model.LogisticRegression with each optimizer solver on the standardized "
           "data (569×30): distance to the L-BFGS optimum against epochs and wall time (log). "
           "Full-batch GD at its safe step 1/L is cheap per epoch but needs many; the mini-batch "
           "methods take n/32 steps per epoch and end within 5·10⁻⁴ of the optimum.",
           lambda path, quick: logistic_optimizers(epochs=15 if quick else 100).plot(path)),
    Figure("optimizers_mlp.png", "Optimizers (§1.2–2)", "An MLP on the handwritten digits",
           "A 64-128-10 ReLU network trained from the same initial weights: training loss "
           "against epochs and measured wall time. One full-batch GD step per epoch is fast "
           "but learns little; AdaGrad, momentum and RMSProp reach the lowest loss here.",
           lambda path, quick: mlp_optimizers(epochs=3 if quick else 20,
                                              n_train=400 if quick else None).plot(path)),
    Figure("lasso_ridge.png", "Lasso vs Ridge (§1)", "Coefficient paths and the three Lasso solvers",
           "Top: the diabetes coefficients as the penalty grows. The L1 penalty sets them to "
           "exactly 0 one after another (count on the top axis); the L2 penalty only shrinks "
           "them towards 0. Bottom: coordinate descent and proximal gradient (ISTA, FISTA) "
           "soft-threshold, reach the optimum and give exact zeros (×); the subgradient method "
           "converges like 1/√k and its coefficients hover near 0 without reaching it.",
           lambda path, quick: lasso_vs_ridge(n_alphas=15 if quick else 40,
                                              iterations=60 if quick else 300).plot(path)),
    Figure("gradient_flow.png", "Vanishing and exploding gradients (§3)",
           "A 10-layer MLP: gradient norms at initialization and the first epochs",
           "Left: |∂L/∂W| of each layer at initialization (log). With n·Var(W) = 1 (Xavier) the "
           "sigmoid still shrinks the gradient ~4× per layer (σ' ≤ 1/4): it vanishes towards the "
           "input. N(0,1) weights (n·Var(W) = 64) make tanh's gradient grow ~300× towards the "
           "input and put ReLU's near 10⁷ (training diverges at once). Kaiming (n·Var(W) = 2) "
           "keeps ReLU's layers level near 1, and BatchNorm (dashed) levels every case. Right: "
           "the networks whose gradients are level and of order 1 learn fastest; ReLU with "
           "Xavier has level but small gradients (the signal halves at every layer) and "
           "hardly moves.",
           lambda path, quick: gradient_flow(epochs=1 if quick else 4,
                                             n_train=320 if quick else None).plot(path)),
    Figure("filter_panel.png", "Filters (§4.1)", "fastdl.image filters on a photo",
           "The mean blurs; the median removes salt-and-pepper noise that the mean would smear; "
           "the Sobel gradient magnitude keeps only the edges; the course's low-pass smooths "
           "gently. (The same panel as python -m fastdl filters.)",
           _draw_photo_panel),
    Figure("frequency_response.png", "Filters (§4.1)", "Frequency response of the kernels",
           "|H| measured as the Fourier transform of each filter's response to a unit impulse. "
           "The low-pass passes DC with gain 1 and damps the Nyquist corner to 1/3; the Sobel "
           "kernels block DC (a constant image has no edges) and pass mid frequencies across "
           "their axis while smoothing along the other.",
           lambda path, quick: filter_frequency_responses(size=32 if quick else 64).plot(path)),
    Figure("cnn_features.png", "CNNs (§4.2)", "What the digits CNN's first layer learned",
           "The 32 learned 3×3 filters (red positive, blue negative) — many are oriented edge "
           "and stroke detectors — and, for three test digits, the ReLU feature maps of the "
           "first 15: each lights up where its pattern occurs in the digit.",
           lambda path, quick: _draw_cnn(path, quick).plot(path)),
    Figure("cnn_history.png", "CNNs (§4.2)", "Its training history (history.plot())",
           "The History returned by fastdl.train.fit draws itself: loss and accuracy per epoch "
           "on the training and the held-out digits.",
           lambda path, quick: _draw_cnn(path, quick)["history"].plot(
               path, title="digits CNN: fastdl.train.fit(...).plot()")),
    Figure("receptive_field.png", "CNNs (§4.2)", "Receptive fields, with and without stride",
           "Each layer sees r_l = r_(l-1) + (k_l − 1)·(product of the earlier strides) input "
           "pixels: the lines are this closed form, the circles are measured by backpropagating "
           "from one output unit with fastdl's autograd. With stride the field grows "
           "geometrically, without it only linearly; right, the fields drawn over a test digit.",
           lambda path, quick: receptive_fields().plot(path)),
]


def _html(figures, images, elapsed: float) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>fastdl: see the course</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
             "color:#222}h2{border-bottom:1px solid #ccc;margin-top:2em}figure{margin:1.5em 0}"
             "img{max-width:100%;border:1px solid #eee}figcaption{margin-top:.4em;"
             "line-height:1.4}</style></head><body>",
             "<h1>See the course</h1>",
             "<p>Every picture below was drawn from a real, seeded run of fastdl's own code "
             f"(<code>python -m fastdl course</code>, {elapsed:.0f} s).</p>"]
    section = None
    for figure, data in zip(figures, images):
        if figure.section != section:
            section = figure.section
            parts.append(f"<h2>{html.escape(section)}</h2>")
        parts.append(f'<figure id="{html.escape(figure.filename[:-4])}"><h3>'
                     f"{html.escape(figure.title)}</h3>"
                     f'<img alt="{html.escape(figure.title)}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode("ascii")}">'
                     f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build(output_dir="course", quick: bool = False, progress: Optional[bool] = None) -> List[str]:
    """Run every experiment, write its PNG into output_dir and an index.html that embeds
    them all (base64 data URIs: the one file works alone). quick: much smaller runs (for
    tests). progress: one line per figure on stdout (default: on). Returns the paths
    written, index.html last."""
    from ._plotting import pyplot
    pyplot()  # fail early, before any experiment runs, if matplotlib is missing
    os.makedirs(output_dir, exist_ok=True)
    progress = True if progress is None else progress
    written, images, start = [], [], time.perf_counter()
    _CNN_RUNS.clear()
    for number, figure in enumerate(FIGURES, 1):
        began = time.perf_counter()
        path = os.path.join(output_dir, figure.filename)
        figure.draw(path, quick)
        with open(path, "rb") as handle:
            images.append(handle.read())
        written.append(path)
        if progress:
            print(f"[{number:>2}/{len(FIGURES)}] {figure.filename:<26} "
                  f"{time.perf_counter() - began:5.1f} s  {figure.title}", flush=True)
    _CNN_RUNS.clear()
    index = os.path.join(output_dir, "index.html")
    with open(index, "w", encoding="utf-8") as handle:
        handle.write(_html(FIGURES, images, time.perf_counter() - start))
    written.append(index)
    if progress:
        print(f"wrote {index} ({len(FIGURES)} figures)", flush=True)
    return written
