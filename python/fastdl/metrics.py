"""fastdl.metrics: accuracy, confusion matrix, R^2, as sklearn.metrics."""

__all__ = []
