"""fastdl.linear_model's C++ solvers against the readable NumPy definitions in
fastdl.linear_model_reference (same objective, same optimum)."""
import numpy as np
import pytest

from fastdl import linear_model
from fastdl import linear_model_reference as ref


@pytest.fixture(scope="module")
def diabetes():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn ships the diabetes data")
    X, y = datasets.load_diabetes(return_X_y=True)
    return X - X.mean(axis=0), y - y.mean()


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_coordinate_descent_matches_reference(diabetes, alpha):
    X, y = diabetes
    n = len(y)
    model = linear_model.Lasso(alpha=alpha, tol=1e-10, max_iter=100_000, fit_intercept=False).fit(X, y)
    w, _ = ref.coordinate_descent(X, y, alpha * n, tol=1e-10, max_iter=100_000)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.coef_ == 0, w == 0)
    assert ref.duality_gap(X, y, model.coef_, alpha * n) < 1e-6 * (y @ y)


@pytest.mark.parametrize("accelerated", [True, False])
def test_proximal_gradient_reaches_the_reference_optimum(diabetes, accelerated):
    X, y = diabetes
    n, alpha = len(y), 0.1
    model = linear_model.Lasso(alpha=alpha, solver="proximal", accelerated=accelerated, tol=1e-10,
                               max_iter=200_000, fit_intercept=False).fit(X, y)
    w = ref.proximal_gradient(X, y, alpha * n, n_iter=20_000, accelerated=True)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-4, atol=1e-3)


def test_subgradient_gets_near_the_optimum_like_the_reference(diabetes):
    X, y = diabetes
    n, alpha = len(y), 0.1
    optimum = ref.objective(X, y, ref.coordinate_descent(X, y, alpha * n, tol=1e-12, max_iter=100_000)[0], alpha * n)
    model = linear_model.Lasso(alpha=alpha, solver="subgradient", max_iter=20_000, fit_intercept=False).fit(X, y)
    step0 = 1.0 / np.linalg.norm(X, 2) ** 2
    w = ref.subgradient_descent(X, y, alpha * n, step0, n_iter=2_000)
    ours, theirs = ref.objective(X, y, model.coef_, alpha * n), ref.objective(X, y, w, alpha * n)
    assert ours <= optimum * (1 + 1e-3)
    assert theirs <= optimum * (1 + 1e-2)  # the readable method gets there too, more slowly


def test_ridge_gradient_descent_matches_closed_form_reference(diabetes):
    X, y = diabetes
    alpha = 0.5
    model = linear_model.Ridge(alpha=alpha, solver="gd", tol=1e-12, max_iter=200_000, fit_intercept=False).fit(X, y)
    closed = np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ y)
    np.testing.assert_allclose(model.coef_, closed, rtol=1e-6, atol=1e-6)


def test_logistic_regression_minimizes_the_reference_objective():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X, y)
    w, b = model.coef_[0], model.intercept_[0]
    value = ref.logistic_objective(X, y, w, b, 1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):  # no nearby point is better: it is the minimum
        dw, db = rng.standard_normal(w.shape) * 1e-3, rng.standard_normal() * 1e-3
        assert ref.logistic_objective(X, y, w + dw, b + db, 1.0) >= value - 1e-9
