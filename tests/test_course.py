"""fastdl.course: every experiment's numbers (not its pixels), History.plot, and the
`python -m fastdl course` command end to end (quick mode)."""
import base64
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import course

pytest.importorskip("sklearn")
PNG = b"\x89PNG\r\n\x1a\n"


def _needs_matplotlib():
    pytest.importorskip("matplotlib")


# ------------------------------------------------------------------ optimizers
@pytest.fixture(scope="module")
def paths():
    return course.optimizer_paths(steps=(100, 400))


def test_momentum_and_adam_beat_gd_on_the_quadratic(paths):
    final = paths.problems["quadratic"]["final_loss"]
    assert set(final) == set(course.optimizers.OPTIMIZERS)
    assert all(math.isfinite(v) for v in final.values())
    assert final["momentum"] < 0.01 * final["GD"]
    assert final["Adam"] < 0.01 * final["GD"]
    # on Rosenbrock's valley too, within the same steps
    rosen = paths.problems["rosenbrock"]["final_loss"]
    assert rosen["momentum"] < rosen["GD"] and rosen["Adam"] < rosen["GD"]


def test_gd_path_is_the_gradient_step(paths):
    """The first GD step is x - lr * grad f(x), computed by fastdl's autograd."""
    trajectory = paths.problems["quadratic"]["paths"]["GD"]
    start = np.array([-4.0, 1.0])
    kappa = course.optimizers._KAPPA
    gradient = np.array([start[0], kappa * start[1]])
    np.testing.assert_allclose(trajectory[0], start)
    np.testing.assert_allclose(trajectory[1], start - gradient / kappa, rtol=1e-12, atol=1e-15)
    losses = paths.problems["quadratic"]["losses"]["GD"]
    assert np.all(np.diff(losses) <= 1e-12)  # step 1/L: monotone
    assert losses[0] == pytest.approx(course.quadratic(*start))
    assert course.rosenbrock(1.0, 1.0) == 0.0


def test_logistic_regression_loss_curve():
    from fastdl.linear_model import LogisticRegression
    X, y = course.optimizers._standardized_breast_cancer()
    model = LogisticRegression(solver="gd", max_iter=7, tol=0.0).fit(X, y)
    assert len(model.loss_curve_) == 7
    assert np.all(np.diff(model.loss_curve_) < 0)
    assert model.loss_curve_[-1] == pytest.approx(
        course.optimizers._logistic_objective(model, X, y), rel=1e-10)
    assert LogisticRegression().fit(X, y).loss_curve_ is None


def test_logistic_optimizers_approach_the_lbfgs_optimum():
    result = course.logistic_optimizers(epochs=8)
    for name, loss in result.loss.items():
        assert len(loss) == 8 and len(result.time[name]) == 8
        assert np.all(loss >= result.optimum - 1e-9), name
        assert np.all(np.diff(result.time[name]) > 0)
    # mini-batch Adam is closer to the optimum after 8 epochs than 8 full-batch GD steps
    gap = {k: v - result.optimum for k, v in result.final_loss.items()}
    assert gap["Adam"] < 0.5 * gap["GD"] and gap["momentum"] < 0.5 * gap["GD"]


def test_mlp_optimizers_learn():
    result = course.mlp_optimizers(epochs=2, hidden=32, n_train=256)
    assert set(result.loss) == set(course.optimizers.OPTIMIZERS)
    for name, loss in result.loss.items():
        assert np.all(np.isfinite(loss)) and loss[-1] < math.log(10) + 0.1, name
    assert result.final_loss["Adam"] < result.final_loss["GD"]


# ------------------------------------------------------------------ Lasso vs Ridge
def test_lasso_path_hits_exact_zeros_ridge_path_only_shrinks():
    result = course.lasso_ridge_paths(n_alphas=12)
    zeros = result["lasso_zeros"]
    assert zeros[0] == 10  # alpha_max: every coefficient exactly 0
    assert zeros[-1] == 0
    assert zeros[0] > zeros[len(zeros) // 2] >= zeros[-1]
    from sklearn.linear_model import Lasso as SkLasso
    from sklearn.datasets import load_diabetes
    X, y = load_diabetes(return_X_y=True)
    expected = SkLasso(alpha=result["lasso_alphas"][3], tol=1e-10, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(result["lasso_coefs"][3], expected.coef_, atol=1e-4 * np.abs(expected.coef_).max())
    np.testing.assert_array_equal(result["lasso_coefs"][3] == 0, expected.coef_ == 0)
    assert np.all(result["ridge_zeros"] == 0)
    norms = np.linalg.norm(result["ridge_coefs"], axis=1)
    assert np.all(np.diff(norms) < 0)  # alphas grow: the coefficients shrink...
    assert norms[-1] < 0.01 * norms[0] and np.all(result["ridge_coefs"] != 0)  # ...never to 0


def test_subgradient_never_gives_exact_zeros_soft_thresholding_does():
    result = course.lasso_solvers(alpha=0.2, iterations=120)
    zeros = result["zeros"]
    assert zeros["subgradient"] == 0
    assert zeros["coordinate descent"] == zeros["FISTA (proximal)"] >= 3
    pattern = result["coefs"]["coordinate descent"] == 0
    np.testing.assert_array_equal(result["coefs"]["FISTA (proximal)"] == 0, pattern)
    # the would-be zeros of the subgradient method are small but not 0
    assert np.all(np.abs(result["coefs"]["subgradient"][pattern]) > 0)
    optimum = result["optimum"]
    final = {k: v[-1] for k, v in result["objective"].items()}
    assert final["coordinate descent"] - optimum < 1e-8 * optimum
    assert final["FISTA (proximal)"] - optimum < 1e-8 * optimum
    assert final["subgradient"] - optimum > 1e-5 * optimum
    # coordinate descent's objective never rises
    assert np.all(np.diff(result["objective"]["coordinate descent"]) <= 1e-9 * optimum)


# ------------------------------------------------------------------ gradients
@pytest.fixture(scope="module")
def flow():
    return course.gradient_flow(activations=("sigmoid", "relu"), epochs=1, n_train=128)


def test_sigmoid_gradients_vanish_kaiming_relu_keeps_them_level(flow):
    runs = flow.runs
    assert len(runs) == 2 * 3 * 2
    sigmoid = runs[("sigmoid", "xavier", False)]["grad_norms"]
    assert len(sigmoid) == 10
    assert sigmoid[0] < 1e-3 * sigmoid[-1]  # orders of magnitude below the last layer's
    assert np.all(np.diff(sigmoid) > 0)  # shrinking layer after layer towards the input
    kaiming = runs[("relu", "kaiming", False)]["grad_norms"]
    assert kaiming.max() < 10 * kaiming.min()
    assert 0.1 < runs[("relu", "kaiming", False)]["ratio_first_last"] < 10
    # N(0,1) weights (n·Var(W) = 64) explode under ReLU; BatchNorm brings them back
    assert runs[("relu", "normal", False)]["grad_norms"].min() > 1e4 * kaiming.max()
    with_bn = runs[("relu", "normal", True)]["grad_norms"]
    assert with_bn.max() < 10 * with_bn.min()
    assert runs[("sigmoid", "xavier", True)]["ratio_first_last"] > 0.1
    assert not runs[("relu", "kaiming", False)]["diverged"]


def test_deep_mlp_initializations_follow_their_variance():
    fastdl.manual_seed(0)
    for init, n_var in (("normal", 64.0), ("xavier", 1.0), ("kaiming", 2.0)):
        model = course.deep_mlp("relu", init, False, depth=4, width=64)
        weight = [m for m in model.children() if hasattr(m, "weight")][1].weight.data
        assert weight.shape == (64, 64)
        assert 64 * weight.var() == pytest.approx(n_var, rel=0.1), init
    with pytest.raises(ValueError, match="activation"):
        course.deep_mlp("softplus", "xavier", False)


# ------------------------------------------------------------------ filters
def test_frequency_response_of_lowpass_and_sobel():
    result = course.filter_frequency_responses(size=32)
    lowpass = result.responses["low-pass [[0,1,0],[1,2,1],[0,1,0]]/6"]
    sobel_x = result.responses["Sobel d/dx"]
    assert result.dc["low-pass [[0,1,0],[1,2,1],[0,1,0]]/6"] == pytest.approx(1.0, abs=1e-12)
    assert result.nyquist["low-pass [[0,1,0],[1,2,1],[0,1,0]]/6"] == pytest.approx(1 / 3, abs=1e-12)
    assert result.dc["Sobel d/dx"] == pytest.approx(0.0, abs=1e-12)
    assert result.dc["Sobel d/dy"] == pytest.approx(0.0, abs=1e-12)
    assert result.dc["mean 5x5"] == pytest.approx(1.0) and result.dc["Gaussian σ=1"] == pytest.approx(1.0)
    omega = 2 * np.pi * np.fft.fftshift(np.fft.fftfreq(32))
    wy, wx = np.meshgrid(omega, omega, indexing="ij")
    np.testing.assert_allclose(lowpass, np.abs(2 + 2 * np.cos(wx) + 2 * np.cos(wy)) / 6, atol=1e-12)
    np.testing.assert_allclose(sobel_x, np.abs(2 * np.sin(wx)) * (2 + 2 * np.cos(wy)), atol=1e-12)
    np.testing.assert_allclose(result.responses["Sobel d/dy"], sobel_x.T, atol=1e-12)


# ------------------------------------------------------------------ CNNs
def _closed_form(layers):
    out, r = [], 1
    for index, (_, kernel, _, _) in enumerate(layers):
        r += (kernel - 1) * int(np.prod([s for _, _, s, _ in layers[:index]]))
        out.append(r)
    return out


@pytest.mark.parametrize("layers", [
    [("conv", 3, 1, 1), ("pool", 2, 2, 0), ("conv", 3, 1, 1), ("pool", 2, 2, 0)],
    [("conv", 5, 2, 0), ("conv", 3, 1, 0), ("pool", 3, 3, 0), ("conv", 2, 2, 0)],
    [("conv", 3, 2, 0)] * 4,
])
def test_receptive_field_matches_the_closed_form(layers):
    expected = _closed_form(layers)
    assert [f["r"] for f in course.receptive_field(layers)] == expected
    assert course.measured_receptive_field(layers) == expected


def test_receptive_fields_with_and_without_stride():
    result = course.receptive_fields()
    stacks = result.stacks
    assert stacks["digits CNN (pools stride 2)"]["closed_form"] == [3, 4, 8, 10]
    assert stacks["digits CNN, pools stride 1"]["closed_form"] == [3, 4, 6, 7]
    assert stacks["6 × conv 3x3, stride 2"]["measured"] == [2 ** (l + 2) - 1 for l in range(6)]
    assert stacks["6 × conv 3x3, stride 1"]["measured"] == [2 * l + 3 for l in range(6)]
    for stack in stacks.values():
        assert stack["measured"] == stack["closed_form"]


def test_digits_cnn_features_and_history_plot(tmp_path):
    _needs_matplotlib()
    result = course.digits_cnn_features(epochs=1, n_digits=2)
    assert result.filters.shape == (32, 3, 3)
    assert result.feature_maps.shape == (2, 32, 8, 8) and result.feature_maps.min() >= 0
    assert result.test_accuracy > 0.5
    history = result.history
    assert isinstance(history, fastdl.train.History) and isinstance(history, dict)
    assert len(history["train_loss"]) == 1
    json.dumps(history)  # still a plain dict of lists
    out = tmp_path / "history.png"
    history.plot(out)
    assert out.read_bytes()[:8] == PNG
    out2 = tmp_path / "history2.png"
    fastdl.train.plot_history(dict(history), out2)
    assert out2.stat().st_size > 0
    with pytest.raises(TypeError, match="history"):
        fastdl.train.plot_history([1, 2], tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    from fastdl.course import _plotting
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"fastdl\[plot\]"):
        _plotting.pyplot()


# ------------------------------------------------------------------ the command
def test_course_command_writes_every_figure_and_a_self_contained_index(tmp_path):
    _needs_matplotlib()
    out = tmp_path / "course"
    run = subprocess.run([sys.executable, "-m", "fastdl", "course", "-o", str(out), "--quick"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    index = (out / "index.html").read_text(encoding="utf-8")
    expected = [figure.filename for figure in course.FIGURES]
    assert sorted(os.listdir(out)) == sorted(expected + ["index.html"])
    for name in expected:
        data = (out / name).read_bytes()
        assert data[:8] == PNG
        assert base64.b64encode(data).decode("ascii") in index, name
        assert f"[{expected.index(name) + 1:>2}/{len(expected)}] {name}" in run.stdout
    assert index.count("<figcaption>") == len(expected)
    assert "src=\"http" not in index and "src='http" not in index
