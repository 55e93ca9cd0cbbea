"""report.json, schema_version 1 (see README, "report.json reference")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressor.errors import ReportError
from compressor.recipe.schema import GateSpec

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # reports from newer minor versions may add fields: keep them, do not fail
    model_config = ConfigDict(extra="allow")


class Accuracy(_Model):
    """The evaluation metric of one result."""

    metric: str = Field(description="metric name: top1, macro_f1, mse, cosine, top1_agreement")
    value: float = Field(description="the metric's value; fractions in [0, 1] for top1/macro_f1/cosine/agreement")
    higher_is_better: bool = Field(True, description="false for error metrics such as mse")
    samples: int | None = Field(None, description="number of evaluation samples")


class Latency(_Model):
    """Latency of one inference call at the benchmark batch size, in milliseconds."""

    p50: float = Field(description="median, ms")
    p90: float = Field(description="90th percentile, ms")
    p99: float = Field(description="99th percentile, ms")
    mean: float = Field(description="mean, ms")
    std: float = Field(description="standard deviation of the samples, ms")
    min: float | None = Field(None, description="fastest sample, ms")
    max: float | None = Field(None, description="slowest sample, ms")
    cv: float | None = Field(None, description="coefficient of variation of the samples (std / mean)")
    n: int | None = Field(None, description="number of timed samples")
    p50_rse: float | None = Field(None, description="relative standard error of the p50 (fraction), from the spread "
                                  "of the medians of consecutive blocks of samples; used by noise-aware latency gates")


class Parity(_Model):
    """Outputs of this result compared with the outputs (ONNX Runtime, FP32) of the model it was
    made from on the evaluation data: the baseline for itself, a pruned/distilled variant for
    itself, a quantized variant for the FP32 model it was quantized from."""

    max_abs_diff: float = Field(description="largest absolute difference of the first output")
    cosine: float | None = Field(None, description="mean cosine similarity to the reference outputs")
    top1_agreement: float | None = Field(None, description="fraction of equal arg-max predictions")
    tolerance: float | None = Field(None, description="max_abs_diff allowed for float precisions")
    passed: bool | None = Field(None, description="whether parity holds (tolerance, or agreement >= 0.90 for int8)")
    reference: str | None = Field(None, description="the variant whose FP32 outputs are the reference (baseline, "
                                  "compressed-fp32, ...)")


class LlmMetrics(_Model):
    """Decoder-LLM measurements (``model: hf / gguf`` recipes) of one result."""

    perplexity: float = Field(description="sliding-window perplexity on the recipe's text (lower is better)")
    perplexity_tokens: int = Field(description="tokens scored")
    window: int | None = Field(None, description="window length, tokens")
    stride: int | None = Field(None, description="window step, tokens")
    bos: bool | None = Field(None, description="whether every window started with the BOS token")
    bos_token: str | None = Field(None, description="the BOS token the windows started with (none: no BOS)")
    bos_source: str | None = Field(None, description="why: the tokenizer's add_bos_token, or data.text.bos")
    eos_token: str | None = Field(None, description="the tokenizer's EOS token (recorded; never appended)")
    chat_template: bool | None = Field(None, description="whether agreement prompts used the chat template")
    next_token_agreement: float | None = Field(None, description="fraction of greedy next tokens equal to the FP32 "
                                               "baseline's, teacher-forced on FP32's greedy continuations")
    agreement_tokens: int | None = Field(None, description="positions compared for next_token_agreement")
    prefill_tokens: int | None = Field(None, description="prompt length of prefill_ms")
    prefill_ms: Latency | None = Field(None, description="prompt (prefill) latency with an empty KV cache")
    decode_tokens_per_s: float | None = Field(None, description="batch-1 greedy decode speed with the KV cache")
    decode_tokens: int | None = Field(None, description="decode steps timed")
    peak_rss_bytes: int | None = Field(None, description="peak resident memory of the measuring process after "
                                       "loading the model (load + run)")
    note: str | None = Field(None, description="where the FP32 weights came from, e.g. dequantized from GGUF Q4_1")


class PairedSpeedup(_Model):
    """Speedup over another model (the baseline) timed interleaved with it, in one process on
    one target: rounds that time each model ``per_round`` times, alternating their order
    (``compressor.bench.paired``). Sequential runs in separate processes drift apart on a
    shared machine; paired rounds share the load."""

    against: str = Field(description="the variant (or file) it was timed against, e.g. baseline")
    speedup: float = Field(description="median over rounds of (against's round median / this model's round median); "
                           "the min_speedup gate's value")
    p10: float = Field(description="10th percentile of the per-round speedups")
    p90: float = Field(description="90th percentile of the per-round speedups")
    rounds: int = Field(description="number of rounds")
    per_round: int = Field(description="timed calls of each model per round")
    p50_ms: float = Field(description="this model's median latency over the paired rounds, ms")
    against_p50_ms: float = Field(description="the other model's median latency over the paired rounds, ms")


class Result(_Model):
    """One (variant, target) measurement."""

    variant: str = Field(description="baseline (input model, FP32), compressed-fp32 (after torch steps), compressed, "
                         "or the file stem for `compressor bench`")
    target: str = Field(description="target name (targets/<name>.yaml)")
    precision: str = Field(description="precision the target ran: fp32, bf16, fp16, int8")
    status: Literal["ok", "failed"] = Field("ok", description="failed: the target could not compile or run it")
    error: str | None = Field(None, description="why the target failed (status failed only)")
    accuracy: Accuracy | None = None
    latency_ms: Latency | None = None
    throughput_per_s: float | None = Field(None, description="batch_size * 1000 / mean latency")
    size_bytes: int | None = Field(None, description="size of the deployed artifact (with external data), bytes")
    parity: Parity | None = None
    artifact: str | None = Field(None, description="artifact path, relative to the run folder")
    latency_samples: str | None = Field(None, description="JSON file with the raw latency samples (ms), relative to "
                                        "the report's folder")
    device: dict[str, Any] | None = Field(None, description="the target's own description (runtime, device, options); "
                                          "`deploy`: the device it deploys to (name, label, arch, features, source: "
                                          "detected or declared); `quantization`: for int8 results, the settings its "
                                          "(runtime, device) chose, the reason and any warnings")
    accuracy_kernels: Literal["device", "host", "emulated", "emulated-arm64"] | None = Field(
        None, description="which kernels computed the accuracy: device (this host is, or takes the same INT8 kernel "
        "path as, the deploy device), host (this host's kernels, not the device's: confirm on the device with "
        "`compressor bench --data`), emulated (the device's kernel path under qemu, `compressor bench --emulate-cpu`), emulated-arm64 (ONNX "
        "Runtime's aarch64 build under qemu-aarch64 with the arm64 device's CPU model: ort-mobile INT8, "
        "`compressor bench --emulate-cpu arm64`)")
    host: str | None = Field(None, description="host name of the machine that measured it (set in merged reports)")
    llm: LlmMetrics | None = Field(None, description="decoder LLMs: perplexity, agreement, prefill, decode speed, "
                                   "memory (their latency_ms is the per-token decode latency)")
    paired: PairedSpeedup | None = Field(None, description="speedup over the baseline on the same target from "
                                         "interleaved timing (when gates.min_speedup is set or benchmark.paired)")


class GateResult(_Model):
    """One evaluated CI gate."""

    name: str = Field(description="a gate of the recipe's gates: (" + ", ".join(GateSpec.model_fields) + "), "
                      "target_ok (a target that failed), or a gate a step recorded, <step>.accuracy_criterion")
    limit: float = Field(description="the limit given (pp, x, percent, bytes or tokens/s)")
    value: float | None = Field(description="the measured value, null when nothing could be measured")
    passed: bool
    detail: str = Field("", description="which variant@target, and the noise allowance for latency gates")


class Report(_Model):
    """report.json: everything one run (or one `compressor bench`) measured."""

    schema_version: int = Field(SCHEMA_VERSION, description="incremented on incompatible changes")
    recipe: str = Field(description="recipe name; `bench:<file>` for `compressor bench`, `merged:...` for merges")
    created: str | None = Field(None, description="UTC time the report was written, ISO 8601")
    environment: dict[str, Any] = Field(default_factory=dict, description="the measuring machine: cpu, cpu_flags, device (its "
                                        "instruction-set label and features), "
                                        "logical_cores, machine, os, python, host, threads, compressor, runtimes")
    steps: list[dict[str, Any]] = Field(default_factory=list, description="one entry per step: name, kind, seconds, "
                                        "details")
    results: list[Result] = Field(default_factory=list)
    gate_limits: dict[str, float] | None = Field(None, description="the recipe's gates: limits, re-evaluated by "
                                                 "`compressor check` when no limits are given on its command line")
    gates: list[GateResult] = Field(default_factory=list)
    hosts: list[dict[str, Any]] | None = Field(None, description="merged reports: the environment of every device")
    int8_verdict: dict[str, Any] | None = Field(
        None, description="whether INT8 paid in this run, from its own latencies: `pays` (the fastest INT8 result "
        "ran >= 1.05x the fastest FP32 baseline), `line` (the one line the terminal printed), `fastest` (the fastest "
        "result measured), `against` (that FP32 baseline), `best_int8` (variant, target, speedup) and `levers` (what "
        "the run measured faster without INT8: another runtime, the recipe's smaller FP32 model)")
    noise_floor: dict[str, Any] | None = Field(
        None, description="when data.metric is scored against the FP32 model (top1_agreement, cosine): that metric of "
        "the FP32 model against itself with +-1 LSB of uniform noise on its float inputs, on the evaluation data: "
        "`metric`, `value`, `perturbation` (in words), `samples`, `stable_samples` (FP32 top-1 unchanged)")
    warnings: list[str] | None = Field(None, description="settings known to be wrong for a target's device (e.g. "
                                       "U8S8 on x86 without VNNI), as '<target>: <why and the fix>'")

    def result(self, variant: str, target: str, host: str | None = None) -> Result | None:
        return next((r for r in self.results
                     if r.variant == variant and r.target == target and (host is None or r.host == host)), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of report.json (shipped as compressor/schemas/report.schema.json)."""
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"compressor-report-v{SCHEMA_VERSION}"
    return schema


SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"


def write_report_schema(path: Path = SCHEMA_FILE) -> Path:
    """Regenerate the shipped schema file (``python -m compressor.report.model``)."""
    from compressor.utils.io import atomic_write_text

    return atomic_write_text(path, json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n")


def load_report(path: str | Path) -> Report:
    """Read and validate a report.json (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ReportError(f"report {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path} is not valid JSON ({e}); it may be truncated", hint="re-run the benchmark") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} is not a report (expected a JSON object)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path} has schema_version {version!r}; this compressor reads schema_version {SCHEMA_VERSION}")
    try:
        return Report.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ReportError(f"{path} is not a valid report: {loc}: {err['msg']}") from None


if __name__ == "__main__":  # pragma: no cover
    print(write_report_schema())
