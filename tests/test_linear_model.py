"""fastdl.linear_model against scikit-learn on the data it ships: diabetes (Ridge, Lasso),
breast cancer (binary logistic regression), digits (multinomial)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastdl import linear_model as lm

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is the oracle for these tests")
from sklearn import linear_model as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


def _split_scaled(X, y):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0,
                                                        stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="module")
def cancer():
    return _split_scaled(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="module")
def digits():
    return _split_scaled(*load_digits(return_X_y=True))


def _relative(ours, theirs):
    return np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))


def _lasso_objective(X, y, coef, intercept, alpha):
    return 0.5 / len(y) * np.sum((y - X @ coef - intercept) ** 2) + alpha * np.abs(coef).sum()


# ---------------------------------------------------------------------- least squares
def test_linear_regression_matches_sklearn(diabetes):
    X, y = diabetes
    ours, theirs = lm.LinearRegression().fit(X, y), sk.LinearRegression().fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-10)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-12)
    no_intercept = lm.LinearRegression(fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(no_intercept.coef_,
                               sk.LinearRegression(fit_intercept=False).fit(X, y).coef_, rtol=1e-9)
    assert no_intercept.intercept_ == 0.0


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0, 10.0])
def test_ridge_closed_form_matches_sklearn(diabetes, alpha):
    X, y = diabetes
    ours, theirs = lm.Ridge(alpha=alpha).fit(X, y), sk.Ridge(alpha=alpha).fit(X, y)
    assert ours.coef_.shape == theirs.coef_.shape == (10,)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9, atol=1e-9)
    assert ours.intercept_ == pytest.approx(theirs.intercept_, rel=1e-12)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_ridge_gradient_descent_matches_sklearn(diabetes, alpha):
    X, y = diabetes
    ours = lm.Ridge(alpha=alpha, solver="gd", tol=1e-12, max_iter=100_000).fit(X, y)
    theirs = sk.Ridge(alpha=alpha).fit(X, y)
    assert _relative(ours.coef_, theirs.coef_) < 1e-8
    assert ours.intercept_ == pytest.approx(theirs.intercept_, rel=1e-8)
    assert 1 <= int(ours.n_iter_[0]) < 100_000


def test_ridge_multi_target_matches_sklearn(diabetes):
    X, y = diabetes
    Y = np.column_stack([y, np.log(y), -y])
    ours, theirs = lm.Ridge(alpha=0.5).fit(X, Y), sk.Ridge(alpha=0.5).fit(X, Y)
    assert ours.coef_.shape == (3, 10) and ours.intercept_.shape == (3,)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-10)


# ---------------------------------------------------------------------- Lasso
LASSO_ALPHAS = [0.005, 0.05, 0.1, 0.5, 1.0]


@pytest.mark.parametrize("alpha", LASSO_ALPHAS)
def test_lasso_coordinate_descent_matches_sklearn(diabetes, alpha):
    X, y = diabetes
    ours, theirs = lm.Lasso(alpha=alpha).fit(X, y), sk.Lasso(alpha=alpha).fit(X, y)
    assert _relative(ours.coef_, theirs.coef_) < 1e-3
    np.testing.assert_array_equal(ours.coef_ == 0, theirs.coef_ == 0)
    assert ours.intercept_ == pytest.approx(theirs.intercept_, rel=1e-3)
    assert ours.n_iter_ == theirs.n_iter_  # the same algorithm, sweep for sweep
    assert ours.dual_gap_ == pytest.approx(theirs.dual_gap_, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_lasso_tight_tolerance_matches_sklearn(diabetes, alpha):
    X, y = diabetes
    ours = lm.Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(X, y)
    theirs = sk.Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(X, y)
    assert _relative(ours.coef_, theirs.coef_) < 1e-9
    np.testing.assert_array_equal(ours.coef_ == 0, theirs.coef_ == 0)


@pytest.mark.parametrize("accelerated", [True, False], ids=["fista", "ista"])
@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_lasso_proximal_is_close_to_sklearn(diabetes, alpha, accelerated):
    X, y = diabetes
    reference = sk.Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    ours = lm.Lasso(alpha=alpha, solver="proximal", accelerated=accelerated, tol=1e-10,
                    max_iter=100_000).fit(X, y)
    assert _relative(ours.coef_, reference.coef_) < 1e-4
    np.testing.assert_array_equal(ours.coef_ == 0, reference.coef_ == 0)


def test_fista_needs_fewer_steps_than_ista(diabetes):
    X, y = diabetes
    fista = lm.Lasso(alpha=0.01, solver="proximal", tol=1e-8, max_iter=100_000).fit(X, y)
    ista = lm.Lasso(alpha=0.01, solver="proximal", accelerated=False, tol=1e-8,
                    max_iter=100_000).fit(X, y)
    assert fista.n_iter_ * 3 < ista.n_iter_


@pytest.mark.parametrize("alpha", [0.05, 0.5])
def test_lasso_subgradient_reaches_the_optimum(diabetes, alpha):
    X, y = diabetes
    reference = sk.Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    ours = lm.Lasso(alpha=alpha, solver="subgradient", max_iter=20_000, tol=0.0).fit(X, y)
    best = _lasso_objective(X, y, reference.coef_, reference.intercept_, alpha)
    reached = _lasso_objective(X, y, ours.coef_, ours.intercept_, alpha)
    assert best <= reached <= best * (1 + 1e-3)
    assert _relative(ours.coef_, reference.coef_) < 0.05


def test_lasso_warns_when_max_iter_is_too_small(diabetes):
    X, y = diabetes
    with pytest.warns(lm.ConvergenceWarning):
        lm.Lasso(alpha=0.001, max_iter=2).fit(X, y)


def test_lasso_multi_target_matches_sklearn(diabetes):
    X, y = diabetes
    Y = np.column_stack([y, 2 * y + 3])
    ours, theirs = lm.Lasso(alpha=0.1).fit(X, Y), sk.Lasso(alpha=0.1).fit(X, Y)
    assert ours.coef_.shape == theirs.coef_.shape == (2, 10)
    assert _relative(ours.coef_, theirs.coef_) < 1e-3
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-3)


def test_lasso_warm_start_continues_from_the_previous_fit(diabetes):
    X, y = diabetes
    model = lm.Lasso(alpha=0.1, warm_start=True).fit(X, y)
    model.fit(X, y)
    assert model.n_iter_ <= 2


# ---------------------------------------------------------------------- logistic regression
def test_binary_default_solver_matches_sklearn(cancer):
    X_train, X_test, y_train, y_test = cancer
    ours = lm.LogisticRegression().fit(X_train, y_train)
    theirs = sk.LogisticRegression().fit(X_train, y_train)
    assert ours.coef_.shape == theirs.coef_.shape == (1, 30)
    assert ours.intercept_.shape == theirs.intercept_.shape == (1,)
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.01
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test), atol=1e-3)
    assert ours.decision_function(X_test).shape == (len(X_test),)
    np.testing.assert_array_equal(ours.predict(X_test), theirs.predict(X_test))
    np.testing.assert_allclose(ours.predict_log_proba(X_test), np.log(ours.predict_proba(X_test)),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_binary_converged_solution_equals_sklearn(cancer, C):
    X_train, X_test, y_train, _ = cancer
    ours = lm.LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X_train, y_train)
    theirs = sk.LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X_train, y_train)
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test), atol=1e-5)
    assert _relative(ours.coef_, theirs.coef_) < 1e-3


@pytest.mark.parametrize("solver", ["gd", "sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_optimizer_solvers_reach_a_sane_accuracy(cancer, solver):
    X_train, X_test, y_train, y_test = cancer
    ours = lm.LogisticRegression(solver=solver, max_iter=300, random_state=0).fit(X_train, y_train)
    theirs = sk.LogisticRegression().fit(X_train, y_train)
    assert ours.score(X_test, y_test) >= theirs.score(X_test, y_test) - 0.03
    assert 1 <= ours.n_iter_[0] <= 300
    # a descent on the same objective: not worse than the zero model by far
    proba = ours.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_sgd_solver_is_reproducible_with_random_state(cancer):
    X_train, _, y_train, _ = cancer
    fit = lambda: lm.LogisticRegression(solver="sgd", max_iter=20, random_state=3).fit(X_train, y_train)
    np.testing.assert_array_equal(fit().coef_, fit().coef_)


def test_multinomial_digits_matches_sklearn(digits):
    X_train, X_test, y_train, y_test = digits
    ours = lm.LogisticRegression(max_iter=1000).fit(X_train, y_train)
    theirs = sk.LogisticRegression(max_iter=1000).fit(X_train, y_train)
    assert ours.coef_.shape == theirs.coef_.shape == (10, 64)
    assert ours.intercept_.shape == (10,)
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.01
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test), atol=2e-2)
    assert ours.decision_function(X_test).shape == (len(X_test), 10)


def test_multinomial_converged_solution_equals_sklearn(digits):
    X_train, X_test, y_train, _ = digits
    ours = lm.LogisticRegression(C=0.1, tol=1e-9, max_iter=5000).fit(X_train, y_train)
    theirs = sk.LogisticRegression(C=0.1, tol=1e-9, max_iter=5000).fit(X_train, y_train)
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test), atol=1e-4)


@pytest.mark.parametrize("solver", ["gd", "adam"])
def test_multinomial_optimizer_solvers(digits, solver):
    X_train, X_test, y_train, y_test = digits
    ours = lm.LogisticRegression(solver=solver, max_iter=200, random_state=0).fit(X_train, y_train)
    assert ours.score(X_test, y_test) >= 0.93


def test_arbitrary_labels_and_no_penalty(cancer):
    X_train, X_test, y_train, y_test = cancer
    names = np.array(["benign", "malignant"])
    ours = lm.LogisticRegression(C=0.5).fit(X_train, names[y_train])
    np.testing.assert_array_equal(ours.classes_, names)
    assert set(ours.predict(X_test)) <= set(names)
    assert ours.score(X_test, names[y_test]) == lm.LogisticRegression(C=0.5).fit(
        X_train, y_train).score(X_test, y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = lm.LogisticRegression(penalty=None, max_iter=50).fit(X_train, y_train)
    assert np.abs(free.coef_).max() > np.abs(ours.coef_).max()


# ---------------------------------------------------------------------- estimator API
ESTIMATORS = [lm.LinearRegression(), lm.Ridge(alpha=2.0, solver="gd"),
              lm.Lasso(alpha=0.3, solver="proximal"), lm.LogisticRegression(C=0.5, solver="adam")]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_get_set_params_and_clone(estimator):
    params = estimator.get_params()
    copy = clone(estimator)
    assert copy is not estimator and copy.get_params() == params
    assert type(copy).__name__ in repr(copy)
    first = sorted(params)[0]
    assert copy.set_params(**{first: params[first]}) is copy
    with pytest.raises(ValueError, match="Invalid parameter"):
        copy.set_params(not_a_parameter=1)


def test_fit_returns_self_and_sklearn_pipeline_works(diabetes):
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    X, y = diabetes
    model = lm.Ridge()
    assert model.fit(X, y) is model
    scores = cross_val_score(make_pipeline(StandardScaler(), lm.Lasso(alpha=0.5)), X, y, cv=3)
    reference = cross_val_score(make_pipeline(StandardScaler(), sk.Lasso(alpha=0.5)), X, y, cv=3)
    np.testing.assert_allclose(scores, reference, rtol=1e-4)


def test_bad_inputs_raise_clear_errors(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match=r"X: expected a 2-D array .* got shape \(442,\)"):
        lm.Ridge().fit(X[:, 0], y)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X: contains NaN or infinity \(shape \(442, 10\)\)"):
        lm.Lasso().fit(bad, y)
    with pytest.raises(ValueError, match="X has 442 samples but y has 441"):
        lm.LinearRegression().fit(X, y[:-1])
    with pytest.raises(ValueError, match="alpha"):
        lm.Lasso(alpha=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        lm.Lasso(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="C"):
        lm.LogisticRegression(C=0).fit(X, y > 150)
    with pytest.raises(ValueError, match="only one class"):
        lm.LogisticRegression().fit(X, np.ones(len(X)))
    with pytest.raises(lm.NotFittedError):
        lm.Ridge().predict(X)
    model = lm.Ridge().fit(X, y)
    with pytest.raises(ValueError, match="has 3 features"):
        model.predict(X[:, :3])
