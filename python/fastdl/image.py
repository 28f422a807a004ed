"""fastdl.image: classical image filtering with scipy.ndimage's names and boundary modes."""

__all__ = []
