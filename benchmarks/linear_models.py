"""fastdl.linear_model vs scikit-learn: fit times on the data scikit-learn ships and a larger
synthetic problem, in one process.

    python benchmarks/linear_models.py [--threads N] [--repeats R]

Each case first checks that both fits agree (coefficients, or held-out accuracy), then
times fit() with one warm-up and reports the median of the repeats in milliseconds and
the ratio sklearn / fastdl (> 1: fastdl is faster). Results recorded on the development
machine are kept in benchmarks/results/linear_models.txt.
"""
import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn import linear_model as sk
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_regression
from sklearn.preprocessing import StandardScaler

import fastdl
from fastdl import linear_model as lm


def median_ms(fit, repeats):
    fit()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def check(name, ours, theirs, X, y):
    if hasattr(theirs, "classes_"):
        gap = abs(ours.score(X, y) - theirs.score(X, y))
        assert gap <= 0.01, f"{name}: accuracies differ by {gap}"
        return f"acc {ours.score(X, y):.3f}/{theirs.score(X, y):.3f}"
    error = np.max(np.abs(ours.coef_ - theirs.coef_)) / np.max(np.abs(theirs.coef_))
    assert error < 1e-3, f"{name}: coefficients differ by {error:.2e} (relative)"
    return f"coef rel err {error:.1e}"


def cases():
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes Ridge(1.0)", X, y, lm.Ridge(alpha=1.0), sk.Ridge(alpha=1.0)
    yield "diabetes Lasso(0.1) cd", X, y, lm.Lasso(alpha=0.1), sk.Lasso(alpha=0.1)
    yield ("diabetes Lasso(0.1) FISTA", X, y,
           lm.Lasso(alpha=0.1, solver="proximal", tol=1e-8, max_iter=10_000), sk.Lasso(alpha=0.1))
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xb = StandardScaler().fit_transform(Xb)
    yield "breast_cancer Logistic lbfgs", Xb, yb, lm.LogisticRegression(), sk.LogisticRegression()
    yield ("breast_cancer Logistic adam", Xb, yb,
           lm.LogisticRegression(solver="adam", max_iter=300), sk.LogisticRegression())
    Xd, yd = load_digits(return_X_y=True)
    Xd = StandardScaler().fit_transform(Xd)
    yield ("digits Logistic lbfgs", Xd, yd, lm.LogisticRegression(max_iter=1000),
           sk.LogisticRegression(max_iter=1000))
    Xs, ys = make_regression(n_samples=20_000, n_features=500, n_informative=50, noise=5.0,
                             random_state=0)
    yield "synthetic 20000x500 Lasso(1.0) cd", Xs, ys, lm.Lasso(alpha=1.0), sk.Lasso(alpha=1.0)
    yield "synthetic 20000x500 Ridge(1.0)", Xs, ys, lm.Ridge(alpha=1.0), sk.Ridge(alpha=1.0)
    labels = (Xs[:, :50] @ np.linspace(-1, 1, 50) > 0).astype(int)
    yield ("synthetic 20000x500 Logistic lbfgs", Xs, labels, lm.LogisticRegression(max_iter=200),
           sk.LogisticRegression(max_iter=200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        fastdl.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"fastdl {fastdl.__version__}, {fastdl.get_num_threads()} threads, median of "
          f"{args.repeats}")
    print(f"{'case':38s} {'fastdl ms':>10s} {'sklearn ms':>11s} {'sk/fastdl':>9s}  check")
    for name, X, y, ours, theirs in cases():
        ours.fit(X, y)
        theirs.fit(X, y)
        agreement = check(name, ours, theirs, X, y)
        ours_ms = median_ms(lambda: ours.fit(X, y), args.repeats)
        theirs_ms = median_ms(lambda: theirs.fit(X, y), args.repeats)
        print(f"{name:38s} {ours_ms:10.2f} {theirs_ms:11.2f} {theirs_ms / ours_ms:9.2f}  {agreement}")


if __name__ == "__main__":
    main()
