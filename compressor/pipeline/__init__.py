"""The run of a recipe (see run.py for the flow, top to bottom)."""

from compressor.pipeline.jobs import accuracy_kernels, bench_variant
from compressor.pipeline.plan import check_target_quantization, quantization_plan, resolve_targets, target_device
from compressor.pipeline.output import write_report
from compressor.pipeline.run import default_run_dir, run_recipe
from compressor.pipeline.variants import BASELINE, COMPRESSED, Variant

__all__ = ["BASELINE", "COMPRESSED", "Variant", "accuracy_kernels", "bench_variant", "check_target_quantization",
           "default_run_dir", "quantization_plan", "resolve_targets", "run_recipe", "target_device", "write_report"]
