"""fastdl.linear_model: regression and classification with scikit-learn's estimator API."""

__all__ = []
