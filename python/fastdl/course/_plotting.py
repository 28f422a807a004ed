"""Shared plotting helpers of the course: matplotlib loaded lazily, on the Agg backend."""
from __future__ import annotations

import sys


def pyplot():
    """matplotlib.pyplot, or an ImportError that says what to install. Only the figures need
    it: every experiment's numbers are computed without matplotlib. The file-only Agg backend
    is chosen unless the caller already imported pyplot (a notebook keeps its own backend)."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError("fastdl draws its figures with matplotlib: "
                          "pip install 'fastdl[plot]'") from error
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, dpi: int = 100) -> str:
    """Write fig as a PNG to path, close it, and return the path."""
    plt = pyplot()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


class Result(dict):
    """An experiment's numbers: a plain dict (keys as attributes too) whose .plot(path)
    draws the experiment's figure."""

    _plotter = None

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def plot(self, path):
        """Draw this experiment's figure into the PNG file path; return the path."""
        return type(self)._plotter(self, path)


def result_type(name: str, plotter) -> type:
    """A Result subclass whose .plot calls plotter(result, path)."""
    return type(name, (Result,), {"_plotter": staticmethod(plotter), "__doc__": plotter.__doc__})
