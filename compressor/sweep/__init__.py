"""``compressor sweep``: recipe variants as Ray tasks, merged into one report (see run.py)."""

from compressor.sweep.grid import Axis, Variant, expand, parse_axis
from compressor.sweep.run import SweepOptions, run_sweep

__all__ = ["Axis", "SweepOptions", "Variant", "expand", "parse_axis", "run_sweep"]
