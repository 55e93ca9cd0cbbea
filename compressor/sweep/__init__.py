"""``compressor sweep``: recipe variants (a grid, or an Optuna search) as Ray tasks, merged
into one report (see run.py, search.py), optionally on every kind of device (nodes.py)."""

from compressor.sweep.grid import Axis, Variant, expand, parse_axis
from compressor.sweep.pool import SweepOptions
from compressor.sweep.run import run_sweep
from compressor.sweep.search import SearchOptions, run_search
from compressor.sweep.space import Dimension, parse_dimension

__all__ = ["Axis", "Dimension", "SearchOptions", "SweepOptions", "Variant", "expand", "parse_axis",
           "parse_dimension", "run_search", "run_sweep"]
