"""fastdl.metrics against sklearn.metrics, and fastdl.nn.functional.one_hot against
torch.nn.functional.one_hot."""
from __future__ import annotations

import numpy as np
import pytest

import fastdl
from fastdl import metrics
from fastdl.nn import functional as F

skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle for metrics")


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, size=200))
    return y_true, y_pred, rng.random(200)


def test_accuracy_matches_sklearn(labels):
    y_true, y_pred, weight = labels
    assert metrics.accuracy_score(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
    assert metrics.accuracy_score(y_true, y_pred, normalize=False) == skm.accuracy_score(
        y_true, y_pred, normalize=False)
    assert metrics.accuracy_score(y_true, y_pred, sample_weight=weight) == pytest.approx(
        skm.accuracy_score(y_true, y_pred, sample_weight=weight), rel=1e-12)
    names = np.array(["cat", "dog", "eel", "fox"])
    assert metrics.accuracy(names[y_true], names[y_pred]) == skm.accuracy_score(y_true, y_pred)
    assert metrics.accuracy_score(fastdl.tensor(y_true), fastdl.tensor(y_pred)) == \
        skm.accuracy_score(y_true, y_pred)


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_matches_sklearn(labels, normalize):
    y_true, y_pred, weight = labels
    ours = metrics.confusion_matrix(y_true, y_pred, normalize=normalize)
    theirs = skm.confusion_matrix(y_true, y_pred, normalize=normalize)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(metrics.confusion_matrix(y_true, y_pred, sample_weight=weight),
                               skm.confusion_matrix(y_true, y_pred, sample_weight=weight),
                               rtol=1e-12)


def test_confusion_matrix_with_labels_matches_sklearn(labels):
    y_true, y_pred, _ = labels
    for chosen in ([3, 1, 0], [2], [0, 1, 2, 3, 7]):
        np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, labels=chosen),
                                      skm.confusion_matrix(y_true, y_pred, labels=chosen))
    names = np.array(["b", "a", "c", "d"])
    np.testing.assert_array_equal(metrics.confusion_matrix(names[y_true], names[y_pred]),
                                  skm.confusion_matrix(names[y_true], names[y_pred]))
    with pytest.raises(ValueError, match="at least one label"):
        metrics.confusion_matrix(y_true, y_pred, labels=[9])


@pytest.mark.parametrize("multioutput", ["raw_values", "uniform_average", "variance_weighted",
                                         [0.2, 0.5, 0.3]])
def test_r2_score_matches_sklearn(multioutput):
    rng = np.random.default_rng(1)
    y_true = rng.standard_normal((50, 3)) * [1.0, 5.0, 0.1]
    y_pred = y_true + 0.3 * rng.standard_normal((50, 3))
    weight = rng.random(50)
    for w in (None, weight):
        np.testing.assert_allclose(
            metrics.r2_score(y_true, y_pred, sample_weight=w, multioutput=multioutput),
            skm.r2_score(y_true, y_pred, sample_weight=w, multioutput=multioutput), rtol=1e-12)
    assert metrics.r2_score(y_true[:, 0], y_pred[:, 0]) == pytest.approx(
        skm.r2_score(y_true[:, 0], y_pred[:, 0]), rel=1e-12)


def test_r2_score_of_a_constant_target_is_forced_finite_like_sklearn():
    y = np.full(5, 2.0)
    assert metrics.r2_score(y, y) == skm.r2_score(y, y) == 1.0
    assert metrics.r2_score(y, y + 1) == skm.r2_score(y, y + 1) == 0.0


def test_metric_errors_name_the_argument():
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        metrics.accuracy_score([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="y_true: expected a 1-D array"):
        metrics.confusion_matrix(np.zeros((2, 2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="normalize"):
        metrics.confusion_matrix([0, 1], [0, 1], normalize="rows")
    with pytest.raises(ValueError, match="same shape"):
        metrics.r2_score(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------------- one_hot
torch = pytest.importorskip("torch", reason="PyTorch is the oracle for one_hot")


@pytest.mark.parametrize("shape, num_classes", [((7,), -1), ((3, 4), 6), ((2, 3, 2), -1),
                                                ((5,), 5), ((0,), 3)])
def test_one_hot_matches_torch(shape, num_classes):
    rng = np.random.default_rng(2)
    high = 5 if num_classes == -1 else num_classes
    indices = rng.integers(0, high, size=shape).astype(np.int64)
    ours = F.one_hot(fastdl.tensor(indices), num_classes)
    theirs = torch.nn.functional.one_hot(torch.tensor(indices), num_classes)
    assert ours.dtype == np.int64 and ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_one_hot_errors_like_torch():
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(fastdl.tensor(np.array([0, -1])))
    with pytest.raises(ValueError, match="smaller than num_classes=3"):
        F.one_hot(fastdl.tensor(np.array([0, 3])), 3)
    with pytest.raises(ValueError, match="empty tensor"):
        F.one_hot(fastdl.tensor(np.zeros(0, dtype=np.int64)))
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(fastdl.tensor(np.array([0.0, 1.0])))
    for bad in (torch.tensor([0, -1]), ):
        with pytest.raises(RuntimeError):
            torch.nn.functional.one_hot(bad)
