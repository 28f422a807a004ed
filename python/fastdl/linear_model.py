"""fastdl.linear_model: regression and classification with scikit-learn's estimator API.

Estimators follow scikit-learn's conventions: the constructor only stores its arguments,
``fit(X, y)`` returns self and sets the fitted attributes (``coef_``, ``intercept_``,
``n_iter_``, ``classes_``), ``get_params``/``set_params`` make ``sklearn.base.clone`` work.
NumPy arrays in and out, computed in float64.

Objectives, as scikit-learn defines them (n = n_samples):

* ``LinearRegression``: ||y - Xw||^2
* ``Ridge(alpha)``: ||y - Xw||^2 + alpha ||w||^2
* ``Lasso(alpha)``: (1/2n) ||y - Xw||^2 + alpha ||w||_1
* ``LogisticRegression(C)``: 1/2 ||W||^2 + C sum_i logloss_i  (sigmoid for two classes,
  softmax for more), the intercept unpenalized.

The intercept of the least-squares models comes from centering X and y (as scikit-learn).
Heavy loops run in C++ (``csrc/cpu/linear_model.cpp``: coordinate descent, ISTA/FISTA,
subgradient) or in BLAS calls; the optimizer solvers of LogisticRegression are
fastdl.optim optimizers stepping fastdl autograd graphs (full-batch or mini-batch).
"""
from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Dict, Optional

import numpy as np

from . import _C
from .metrics import accuracy_score, r2_score

__all__ = ["LinearRegression", "Ridge", "Lasso", "LogisticRegression", "ConvergenceWarning",
           "NotFittedError"]


class ConvergenceWarning(UserWarning):
    """A solver stopped at max_iter before meeting its tolerance."""


class NotFittedError(ValueError, AttributeError):
    """predict/score called before fit (a ValueError and an AttributeError, as sklearn's)."""


# ---------------------------------------------------------------------- argument checks
def _as_array(values, name: str) -> np.ndarray:
    if hasattr(values, "numpy") and callable(values.numpy):  # fastdl or torch tensors
        values = values.numpy()
    try:
        return np.asarray(values)
    except Exception as error:  # ragged lists and the like
        raise ValueError(f"{name}: could not convert to an array ({error})") from None


def _check_X(X, name: str = "X") -> np.ndarray:
    array = _as_array(X, name)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape "
                         f"{array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: found an empty array of shape {array.shape}")
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinity (shape {array.shape})")
    return array


def _check_y(y, n_samples: int, *, numeric: bool, allow_2d: bool) -> np.ndarray:
    array = _as_array(y, "y")
    if array.ndim == 2 and array.shape[1] == 1 and not allow_2d:
        array = array[:, 0]
    if array.ndim not in ((1, 2) if allow_2d else (1,)):
        expected = "(n_samples,) or (n_samples, n_targets)" if allow_2d else "(n_samples,)"
        raise ValueError(f"y: expected shape {expected}, got {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"y: X has {n_samples} samples but y has {array.shape[0]}")
    if numeric:
        if array.dtype.kind not in "biuf":
            raise ValueError(f"y: expected numeric targets, got dtype {array.dtype}")
        array = np.asarray(array, dtype=np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"y: contains NaN or infinity (shape {array.shape})")
    elif array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"y: contains NaN or infinity (shape {array.shape})")
    return array


def _check_number(value, name: str, *, low: float = 0.0, strict: bool = False,
                  integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value > low if strict else value >= low
    if not ok:
        rule = f"{'>' if strict else '>='} {low}"
        raise ValueError(f"{name}: expected {'an int' if integer else 'a number'} {rule}, "
                         f"got {value!r}")


def _check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


# ---------------------------------------------------------------------- estimator base
class _Estimator:
    """get_params/set_params/repr from the constructor's signature (sklearn.base.BaseEstimator)."""

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(name for name, p in signature.parameters.items()
                      if name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> Dict:
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params):
        valid = self._param_names()
        nested: Dict[str, Dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if not (isinstance(v, type(defaults.get(k))) and v == defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    _estimator_type: Optional[str] = None  # 'regressor' or 'classifier' (sklearn < 1.6)

    def __sklearn_tags__(self):
        """Tags for scikit-learn >= 1.6 (pipelines, cross-validation); only scikit-learn
        calls this, so importing it here adds no dependency."""
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags
        classifier = self._estimator_type == "classifier"
        return Tags(estimator_type=self._estimator_type,
                    target_tags=TargetTags(required=True, multi_output=not classifier),
                    classifier_tags=ClassifierTags() if classifier else None,
                    regressor_tags=None if classifier else RegressorTags())

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 f"'fit' with appropriate arguments before using this estimator.")

    def _check_predict_X(self, X) -> np.ndarray:
        self._check_fitted()
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X: has {X.shape[1]} features (shape {X.shape}), but "
                             f"{type(self).__name__} was fitted with {self.n_features_in_}")
        return X


class _LinearRegressor(_Estimator):
    _estimator_type = "regressor"

    def _validate_data(self, X, y):
        X = _check_X(X)
        y = _check_y(y, X.shape[0], numeric=True, allow_2d=True)
        self.n_features_in_ = X.shape[1]
        return X, y

    def _center(self, X, y):
        """Centered copies and the offsets the intercept is recovered from."""
        if self.fit_intercept:
            X_offset, y_offset = X.mean(axis=0), y.mean(axis=0)
            return X - X_offset, y - y_offset, X_offset, y_offset
        return X, y, np.zeros(X.shape[1]), np.zeros(y.shape[1:])

    def _set_intercept(self, X_offset, y_offset) -> None:
        if self.fit_intercept:
            self.intercept_ = y_offset - X_offset @ self.coef_.T
        else:
            self.intercept_ = 0.0 if self.coef_.ndim == 1 else np.zeros(self.coef_.shape[0])
        if isinstance(self.intercept_, np.ndarray) and self.intercept_.ndim == 0:
            self.intercept_ = float(self.intercept_)

    def predict(self, X) -> np.ndarray:
        X = self._check_predict_X(X)
        return X @ self.coef_.T + self.intercept_

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of predict(X) against y."""
        return r2_score(y, self.predict(X), sample_weight=sample_weight)


# ---------------------------------------------------------------------- least squares
class LinearRegression(_LinearRegressor):
    """Ordinary least squares, min ||y - Xw||^2 (LAPACK least squares on centered data)."""

    def __init__(self, *, fit_intercept: bool = True):
        self.fit_intercept = fit_intercept

    def fit(self, X, y):
        X, y = self._validate_data(X, y)
        Xc, yc, X_offset, y_offset = self._center(X, y)
        coef, _, self.rank_, self.singular_ = np.linalg.lstsq(Xc, yc, rcond=None)
        self.coef_ = coef.T
        self.n_iter_ = None
        self._set_intercept(X_offset, y_offset)
        return self


class Ridge(_LinearRegressor):
    """min ||y - Xw||^2 + alpha ||w||^2.

    solver: 'auto'/'cholesky' solve (X^T X + alpha I) w = X^T y in closed form (LAPACK);
    'gd' runs gradient descent with step 1/L in C++ (two GEMVs a step) until the largest
    coefficient change is under tol times the largest coefficient, or max_iter steps."""

    _SOLVERS = ("auto", "cholesky", "gd")

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True, solver: str = "auto",
                 max_iter: Optional[int] = None, tol: float = 1e-4):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        _check_number(self.alpha, "alpha")
        _check_choice(self.solver, "solver", self._SOLVERS)
        _check_number(self.tol, "tol")
        if self.max_iter is not None:
            _check_number(self.max_iter, "max_iter", low=0, strict=True, integer=True)
        X, y = self._validate_data(X, y)
        Xc, yc, X_offset, y_offset = self._center(X, y)
        Y = yc.reshape(len(yc), -1)
        if self.solver in ("auto", "cholesky"):
            gram = Xc.T @ Xc
            gram[np.diag_indices_from(gram)] += self.alpha
            try:
                coef = np.linalg.solve(gram, Xc.T @ Y).T
            except np.linalg.LinAlgError:  # singular (alpha = 0 and collinear X)
                coef = np.linalg.lstsq(gram, Xc.T @ Y, rcond=None)[0].T
            self.n_iter_ = None
        else:
            x_t = np.ascontiguousarray(Xc.T)
            max_iter = 10_000 if self.max_iter is None else self.max_iter
            coef, iterations = np.empty((Y.shape[1], X.shape[1])), []
            for k in range(Y.shape[1]):
                # sklearn's objective halved: 1/2 ||y - Xw||^2 + alpha/2 ||w||^2.
                w, n_iter, change = _C.proximal_gradient(
                    x_t, np.ascontiguousarray(Y[:, k]), np.zeros(X.shape[1]), 0.0,
                    float(self.alpha), 0.0, max_iter, float(self.tol), False)
                coef[k], _ = w, iterations.append(n_iter)
                if n_iter >= max_iter and change > self.tol:
                    warnings.warn(f"Ridge(solver='gd') stopped at max_iter={max_iter} with a "
                                  f"relative change {change:.2e} > tol={self.tol}",
                                  ConvergenceWarning, stacklevel=2)
            self.n_iter_ = np.asarray(iterations)
        self.coef_ = coef[0] if y.ndim == 1 else coef
        self._set_intercept(X_offset, y_offset)
        return self


class Lasso(_LinearRegressor):
    """min (1/2n) ||y - Xw||^2 + alpha ||w||_1, solved in C++.

    solver:
      'cd'          cyclic coordinate descent, scikit-learn's algorithm (soft-thresholding,
                    residual updates, duality-gap stop: gap < tol * ||y||^2).
      'proximal'    proximal gradient with soft-thresholding: FISTA (accelerated=True, with
                    adaptive restart) or ISTA; step 1/L, same gap stop.
      'subgradient' the subgradient method, d|w| = sign(w) (an element of [-1, 1] at 0),
                    step learning_rate / sqrt(k + 1); returns the best iterate.
    learning_rate: the (initial) step on the objective above for 'proximal'/'subgradient';
    None picks 1/L, L = ||X||_2^2 / n (power iteration).
    """

    _SOLVERS = ("cd", "proximal", "subgradient")

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True, max_iter: int = 1000,
                 tol: float = 1e-4, solver: str = "cd", accelerated: bool = True,
                 learning_rate: Optional[float] = None, warm_start: bool = False):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.accelerated = accelerated
        self.learning_rate = learning_rate
        self.warm_start = warm_start

    def fit(self, X, y):
        _check_number(self.alpha, "alpha")
        _check_number(self.max_iter, "max_iter", low=0, strict=True, integer=True)
        _check_number(self.tol, "tol")
        _check_choice(self.solver, "solver", self._SOLVERS)
        if self.learning_rate is not None:
            _check_number(self.learning_rate, "learning_rate", strict=True)
        X, y = self._validate_data(X, y)
        n, f = X.shape
        Xc, yc, X_offset, y_offset = self._center(X, y)
        Y = yc.reshape(n, -1)
        x_t = np.ascontiguousarray(Xc.T)
        start = np.zeros((Y.shape[1], f))
        if self.warm_start and getattr(self, "coef_", None) is not None:
            previous = np.atleast_2d(self.coef_)
            if previous.shape == start.shape:
                start = previous.copy()
        # The C++ solvers minimize n times the objective: 1/2 ||y - Xw||^2 + (alpha n) ||w||_1.
        l1 = float(self.alpha) * n
        step = -1.0 if self.learning_rate is None else float(self.learning_rate) / n
        coef, iterations, gaps = np.empty_like(start), [], []
        for k in range(Y.shape[1]):
            target = np.ascontiguousarray(Y[:, k])
            w0 = np.ascontiguousarray(start[k])
            if self.solver == "cd":
                result = _C.coordinate_descent(x_t, target, w0, l1, 0.0, self.max_iter, float(self.tol))
            elif self.solver == "proximal":
                result = _C.proximal_gradient(x_t, target, w0, l1, 0.0, step, self.max_iter,
                                              float(self.tol), bool(self.accelerated))
            else:
                result = _C.subgradient_descent(x_t, target, w0, l1, 0.0, step, self.max_iter,
                                                float(self.tol))
            coef[k], n_iter, gap = result
            iterations.append(n_iter)
            gaps.append(gap / n)
            if self.solver != "subgradient" and gap > self.tol * float(target @ target) and n_iter >= self.max_iter:
                warnings.warn(f"Lasso(solver={self.solver!r}) did not converge: duality gap "
                              f"{gap:.3e} > tol * ||y||^2 after max_iter={self.max_iter}; "
                              f"increase max_iter", ConvergenceWarning, stacklevel=2)
        single = y.ndim == 1
        self.coef_ = coef[0] if single else coef
        self.n_iter_ = iterations[0] if single else np.asarray(iterations)
        self.dual_gap_ = gaps[0] if single else np.asarray(gaps)
        self._set_intercept(X_offset, y_offset)
        return self


# ---------------------------------------------------------------------- logistic regression
def _log_softmax(Z: np.ndarray) -> np.ndarray:
    top = Z.max(axis=1, keepdims=True)
    return Z - (top + np.log(np.exp(Z - top).sum(axis=1, keepdims=True)))


def _expit(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class _LogisticObjective:
    """f(theta) = (1/n) sum_i logloss_i + 1/(2 C n) ||W||^2: sklearn's objective divided by
    C n (same minimizer). theta packs W (K', F) then, with an intercept, b (K'); K' = 1 for
    two classes (sigmoid), K classes otherwise (softmax). Two GEMMs per evaluation."""

    def __init__(self, X, labels, n_classes, C, fit_intercept):
        self.X, self.labels, self.fit_intercept = X, labels, fit_intercept
        self.n, self.features = X.shape
        self.outputs = 1 if n_classes == 2 else n_classes
        self.penalty = 0.0 if C == math.inf else 1.0 / (C * self.n)
        if self.outputs == 1:
            self.target = labels.astype(np.float64)
        else:
            self.target = np.zeros((self.n, n_classes))
            self.target[np.arange(self.n), labels] = 1.0

    @property
    def size(self) -> int:
        return self.outputs * (self.features + self.fit_intercept)

    def unpack(self, theta):
        W = theta[: self.outputs * self.features].reshape(self.outputs, self.features)
        b = theta[self.outputs * self.features:] if self.fit_intercept else np.zeros(self.outputs)
        return W, b

    def __call__(self, theta):
        W, b = self.unpack(theta)
        Z = self.X @ W.T + b
        if self.outputs == 1:
            z = Z[:, 0]
            loss = np.mean(np.logaddexp(0.0, z) - self.target * z)
            G = (_expit(z) - self.target)[:, None] / self.n
        else:
            log_p = _log_softmax(Z)
            loss = -np.mean(log_p[np.arange(self.n), self.labels])
            G = (np.exp(log_p) - self.target) / self.n
        loss += 0.5 * self.penalty * float(np.sum(W * W))
        grad_W = G.T @ self.X + self.penalty * W
        parts = [grad_W.ravel()] + ([G.sum(axis=0)] if self.fit_intercept else [])
        return float(loss), np.concatenate(parts)


def _lbfgs(objective, theta, max_iter: int, tol: float, memory: int = 10):
    """Minimize a smooth convex function by L-BFGS (Nocedal & Wright, Alg. 7.4) with a
    backtracking Armijo line search. Stops when max|grad| <= tol (scipy's pgtol, as sklearn
    passes it) or the relative decrease of f falls under 64 eps (scipy's ftol)."""
    f, g = objective(theta)
    s_list, y_list, rho_list = [], [], []
    iterations = 0
    for iterations in range(1, max_iter + 1):
        if np.max(np.abs(g)) <= tol:
            iterations -= 1
            break
        # Two-loop recursion: d = -H g.
        q = g.copy()
        alphas = []
        for s, y, rho in zip(reversed(s_list), reversed(y_list), reversed(rho_list)):
            a = rho * (s @ q)
            alphas.append(a)
            q -= a * y
        if s_list:
            q *= (s_list[-1] @ y_list[-1]) / (y_list[-1] @ y_list[-1])
        else:
            q /= max(1.0, np.linalg.norm(g))  # first step of length at most 1, as scipy
        for (s, y, rho), a in zip(zip(s_list, y_list, rho_list), reversed(alphas)):
            q += s * (a - rho * (y @ q))
        direction = -q
        slope = g @ direction
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_list, y_list, rho_list = [], [], []
            direction, slope = -g, -(g @ g)
        step = 1.0
        for _ in range(50):
            f_new, g_new = objective(theta + step * direction)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease found: at machine precision
        s, y = step * direction, g_new - g
        theta = theta + s
        decrease = (f - f_new) / max(abs(f), abs(f_new), 1.0)
        f, g = f_new, g_new
        sy = s @ y
        if sy > 1e-10 * (y @ y):
            s_list.append(s), y_list.append(y), rho_list.append(1.0 / sy)
            if len(s_list) > memory:
                s_list.pop(0), y_list.pop(0), rho_list.pop(0)
        if decrease <= 64 * np.finfo(float).eps:
            break
    converged = np.max(np.abs(g)) <= tol
    return theta, iterations, converged


class LogisticRegression(_Estimator):
    """Logistic regression: sigmoid and binary cross-entropy for two classes, softmax
    (multinomial) for more; objective 1/2 ||W||^2 + C sum_i logloss_i (penalty='l2') or the
    log-loss alone (penalty=None), the intercept unpenalized, as scikit-learn.

    solver:
      'lbfgs'  (default) fastdl's own L-BFGS on the full batch (BLAS-backed loss and
               gradient); converges to scikit-learn's lbfgs solution. max_iter iterations,
               stop at max|grad| <= tol of the objective divided by C n.
      'gd', 'sgd', 'momentum', 'adagrad', 'rmsprop', 'adam'
               a fastdl.optim optimizer (SGD, SGD with momentum 0.9, Adagrad, RMSprop, Adam)
               steps the parameters of a fastdl autograd graph; max_iter epochs over
               mini-batches of batch_size (None: the full batch, except 'sgd': 32), shuffled
               by random_state; learning_rate None picks 1/L for 'gd'/'sgd'/'momentum'
               (L bounds the loss's curvature) and 0.01/0.1/0.01 for adam/adagrad/rmsprop;
               stop when the epoch's decrease of the full objective is under tol;
               ``loss_curve_`` lists that objective (mean log-loss + ||W||^2 / (2 C n))
               after each epoch.
    """

    _estimator_type = "classifier"
    _SOLVERS = ("lbfgs", "gd", "sgd", "momentum", "adagrad", "rmsprop", "adam")

    def __init__(self, penalty: Optional[str] = "l2", *, C: float = 1.0, fit_intercept: bool = True,
                 solver: str = "lbfgs", max_iter: int = 100, tol: float = 1e-4,
                 learning_rate: Optional[float] = None, batch_size: Optional[int] = None,
                 random_state: Optional[int] = None):
        self.penalty = penalty
        self.C = C
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X, y):
        _check_choice(self.penalty, "penalty", ("l2", None))
        _check_number(self.C, "C", strict=True)
        _check_choice(self.solver, "solver", self._SOLVERS)
        _check_number(self.max_iter, "max_iter", low=0, strict=True, integer=True)
        _check_number(self.tol, "tol")
        if self.learning_rate is not None:
            _check_number(self.learning_rate, "learning_rate", strict=True)
        if self.batch_size is not None:
            _check_number(self.batch_size, "batch_size", low=0, strict=True, integer=True)
        X = _check_X(X)
        y = _check_y(y, X.shape[0], numeric=False, allow_2d=False)
        self.n_features_in_ = X.shape[1]
        self.classes_, labels = np.unique(y, return_inverse=True)
        labels = labels.reshape(-1)
        if len(self.classes_) < 2:
            raise ValueError(f"y: this solver needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {self.classes_[0]!r}")
        C = math.inf if self.penalty is None else float(self.C)
        objective = _LogisticObjective(X, labels, len(self.classes_), C, self.fit_intercept)
        theta = np.zeros(objective.size)
        if self.solver == "lbfgs":
            theta, n_iter, converged = _lbfgs(objective, theta, self.max_iter, float(self.tol))
            if not converged and n_iter >= self.max_iter:
                warnings.warn(f"LogisticRegression(solver='lbfgs') reached max_iter="
                              f"{self.max_iter} before max|grad| <= tol={self.tol}; increase "
                              f"max_iter or scale the data", ConvergenceWarning, stacklevel=2)
            W, b = objective.unpack(theta)
            self.loss_curve_ = None
        else:
            W, b, n_iter = self._fit_with_optimizer(objective, X, labels)
        self.coef_ = np.array(W, dtype=np.float64)
        self.intercept_ = np.array(b, dtype=np.float64) if self.fit_intercept else np.zeros(len(b))
        self.n_iter_ = np.array([n_iter])
        return self

    # -------------------------------------------------------------- optimizer solvers
    def _fit_with_optimizer(self, objective: _LogisticObjective, X, labels):
        from . import optim
        from .autograd import no_grad
        from .nn import Parameter
        from .nn import functional as F
        from .tensor import Tensor

        n, features = X.shape
        outputs = objective.outputs
        W = Parameter(np.zeros((outputs, features)))
        b = Parameter(np.zeros(outputs))
        params = [W, b] if self.fit_intercept else [W]
        binary = outputs == 1
        lr = self.learning_rate
        if lr is None:
            if self.solver in ("gd", "sgd", "momentum"):
                # Curvature of the mean log-loss <= c ||[X, 1]||_2^2 / n, c = 1/4 (sigmoid) or
                # 1/2 (softmax), plus the penalty's 1/(C n).
                augmented = np.hstack([X, np.ones((n, 1))]) if self.fit_intercept else X
                sigma2 = _C.squared_spectral_norm(np.ascontiguousarray(augmented.T))
                lr = 1.0 / ((0.25 if binary else 0.5) * sigma2 / n + objective.penalty)
            else:
                lr = {"adam": 0.01, "adagrad": 0.1, "rmsprop": 0.01}[self.solver]
        optimizer = {
            "gd": lambda: optim.SGD(params, lr=lr),
            "sgd": lambda: optim.SGD(params, lr=lr),
            "momentum": lambda: optim.SGD(params, lr=lr * 0.1, momentum=0.9),
            "adagrad": lambda: optim.Adagrad(params, lr=lr),
            "rmsprop": lambda: optim.RMSprop(params, lr=lr),
            "adam": lambda: optim.Adam(params, lr=lr),
        }[self.solver]()
        batch = self.batch_size or (min(32, n) if self.solver == "sgd" else n)
        rng = np.random.default_rng(self.random_state)
        X_all = Tensor(X)
        target_all = Tensor(objective.target if binary else labels.astype(np.int64))

        def loss_on(X_batch: Tensor, target: Tensor) -> Tensor:
            logits = F.linear(X_batch, W, b if self.fit_intercept else None)
            if binary:
                z = logits.reshape(-1)
                # mean of log(1 + e^z) - t z, written stably: relu(z) + log(1 + e^-|z|) - t z
                loss = (z.relu() + ((-z.abs()).exp() + 1.0).log() - target * z).mean()
            else:
                loss = F.cross_entropy(logits, target)
            if objective.penalty:
                loss = loss + (0.5 * objective.penalty) * (W * W).sum()
            return loss

        previous = math.inf
        epoch = 0
        self.loss_curve_ = []
        for epoch in range(1, self.max_iter + 1):
            order = rng.permutation(n) if batch < n else None
            for start in range(0, n, batch):
                if order is None:
                    X_batch, target = X_all, target_all
                else:
                    index = order[start:start + batch]
                    X_batch, target = Tensor(X[index]), Tensor(target_all.data[index])
                optimizer.zero_grad()
                loss = loss_on(X_batch, target)
                loss.backward()
                optimizer.step()
            with no_grad():
                current = float(loss_on(X_all, target_all).item())
            if not math.isfinite(current):
                raise FloatingPointError(f"LogisticRegression(solver={self.solver!r}) diverged "
                                         f"(objective {current}); lower learning_rate={lr:g}")
            self.loss_curve_.append(current)
            if previous - current < self.tol * max(1.0, abs(current)) and previous >= current:
                break
            previous = current
        return W.data.copy(), b.data.copy(), epoch

    # -------------------------------------------------------------- prediction
    def decision_function(self, X) -> np.ndarray:
        """Scores X @ coef_.T + intercept_: (n_samples,) for two classes, else (n, K)."""
        X = self._check_predict_X(X)
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        """(n_samples, n_classes) probabilities: [1 - sigmoid, sigmoid] or softmax."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = _expit(scores)
            return np.column_stack([1.0 - p, p])
        return np.exp(_log_softmax(scores))

    def predict_log_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([-np.logaddexp(0.0, scores), -np.logaddexp(0.0, -scores)])
        return _log_softmax(scores)

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        index = (scores > 0).astype(np.int64) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of predict(X) against y."""
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
