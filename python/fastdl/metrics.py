"""fastdl.metrics: accuracy, confusion matrix, R^2, as sklearn.metrics (NumPy in, NumPy out)."""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["accuracy_score", "accuracy", "confusion_matrix", "r2_score"]


def _as_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values.numpy() if hasattr(values, "numpy") else values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got shape {array.shape}")
    return array


def _check_lengths(y_true: np.ndarray, y_pred: np.ndarray, sample_weight) -> Optional[np.ndarray]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths: {len(y_true)} and "
                         f"{len(y_pred)}")
    if sample_weight is None:
        return None
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.shape != (len(y_true),):
        raise ValueError(f"sample_weight: expected shape ({len(y_true)},), got {weight.shape}")
    return weight


def accuracy_score(y_true, y_pred, *, normalize: bool = True, sample_weight=None) -> float:
    """Fraction (or, with normalize=False, weighted count) of exact label matches."""
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    weight = _check_lengths(y_true, y_pred, sample_weight)
    correct = (y_true == y_pred).astype(np.float64)
    if weight is None:
        return float(correct.mean()) if normalize else float(correct.sum())
    return float(np.average(correct, weights=weight)) if normalize else float(correct @ weight)


accuracy = accuracy_score


def confusion_matrix(y_true, y_pred, *, labels=None, sample_weight=None,
                     normalize: Optional[str] = None) -> np.ndarray:
    """C[i, j] = (weighted) count of samples of true class labels[i] predicted labels[j].

    labels defaults to the sorted union of both arrays; normalize is None, 'true' (rows sum
    to 1), 'pred' (columns) or 'all', as sklearn.metrics.confusion_matrix."""
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    weight = _check_lengths(y_true, y_pred, sample_weight)
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize: expected None, 'true', 'pred' or 'all', got {normalize!r}")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    else:
        labels = np.asarray(labels)
        if labels.size == 0:
            raise ValueError("labels: 'labels' should contain at least one label")
        if not np.isin(y_true, labels).any():
            raise ValueError("labels: at least one label specified must be in y_true")
    k = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]

    def codes(values):
        position = np.clip(np.searchsorted(sorted_labels, values), 0, k - 1)
        found = sorted_labels[position] == values
        return order[position], found

    true_code, true_found = codes(y_true)
    pred_code, pred_found = codes(y_pred)
    keep = true_found & pred_found  # samples whose labels are not listed are ignored
    w = np.ones(len(y_true)) if weight is None else weight
    matrix = np.zeros((k, k), dtype=np.float64)
    np.add.at(matrix, (true_code[keep], pred_code[keep]), w[keep])
    if normalize is None:
        return matrix.astype(np.int64) if weight is None or np.all(np.mod(w, 1) == 0) else matrix
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalize == "true":
            matrix = matrix / matrix.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            matrix = matrix / matrix.sum(axis=0, keepdims=True)
        else:
            matrix = matrix / matrix.sum()
    return np.nan_to_num(matrix)


def r2_score(y_true, y_pred, *, sample_weight=None, multioutput="uniform_average"):
    """Coefficient of determination 1 - SS_res / SS_tot, per output then averaged.

    A constant y_true scores 1.0 when predicted exactly and 0.0 otherwise (sklearn's
    force_finite). multioutput: 'raw_values', 'uniform_average', 'variance_weighted' or an
    array of weights."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same "
                         f"shape (n_samples,) or (n_samples, n_outputs)")
    if len(y_true) < 2:
        raise ValueError("r2_score needs at least two samples")
    weight = _check_lengths(y_true, y_pred, sample_weight)
    w = np.ones(len(y_true)) if weight is None else weight
    residual = (w[:, None] * (y_true - y_pred) ** 2).sum(axis=0)
    mean = np.average(y_true, axis=0, weights=w)
    total = (w[:, None] * (y_true - mean) ** 2).sum(axis=0)
    scores = np.ones(y_true.shape[1])
    nonzero = total != 0
    scores[nonzero] = 1.0 - residual[nonzero] / total[nonzero]
    scores[~nonzero & (residual != 0)] = 0.0
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return scores
        if multioutput == "uniform_average":
            return float(scores.mean())
        if multioutput == "variance_weighted":
            return float(np.average(scores, weights=total)) if total.sum() else float(scores.mean())
        raise ValueError(f"multioutput: expected 'raw_values', 'uniform_average', "
                         f"'variance_weighted' or weights, got {multioutput!r}")
    weights = np.asarray(multioutput, dtype=np.float64)
    if weights.shape != scores.shape:
        raise ValueError(f"multioutput: expected {scores.shape[0]} weights, got shape {weights.shape}")
    return float(np.average(scores, weights=weights))
