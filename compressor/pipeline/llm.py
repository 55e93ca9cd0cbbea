"""The decoder-LLM run (``model: {hf: folder}`` or ``{gguf: file}``): load -> export the
KV-cache decoder (FP32 baseline) -> weight-only quantization, once per runtime family the
targets need (ONNX Runtime MatMulNBits, OpenVINO NNCF) -> per target: perplexity, greedy
agreement with FP32, prefill latency, decode tokens/s, peak memory, size -> report.

The same report, gates and `compressor check` as the other families; :func:`run_recipe`
in pipeline/run.py hands decoder-LLM recipes here.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import yaml

from compressor.bench.environment import describe_environment
from compressor.errors import CompressorError, TargetFailed
from compressor.progress import QUIET, Reporter
from compressor.recipe.schema import Recipe
from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import Report, Result
from compressor.stepcache import StepCache, file_digest
from compressor.steps.base import StepReport
from compressor.targets.base import ModelArtifact
from compressor.targets.spec import TargetSpec
from compressor.utils.io import atomic_write_text
from compressor.utils.paths import resolve_path

BASELINE, COMPRESSED = "baseline", "compressed"
# runtime -> the weight-only engine whose output it runs
ENGINES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def _model_files(recipe: Recipe, base_dir: Path | None) -> list[Path]:
    spec = recipe.model
    if spec.gguf is not None:
        return [resolve_path(spec.gguf, base_dir)]
    folder = resolve_path(spec.hf, base_dir)
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def run_llm_recipe(recipe: Recipe, target_specs: list[TargetSpec], run_dir: Path, base_dir: Path | None,
                   progress: Reporter = QUIET, resume: bool = False) -> Report:
    """Run a decoder-LLM recipe; writes artifacts, report.json/md/html into ``run_dir``."""
    from compressor.data.text import split_text
    from compressor.export.decoder import check_decoder_parity, export_decoder
    from compressor.models.llm import load_llm
    from compressor.pipeline.output import write_report

    cache = StepCache(run_dir, reuse=resume)
    artifacts = run_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.resolved.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    progress.log(f"[bold]loading[/] {recipe.model.hf or recipe.model.gguf}")
    llm = load_llm(recipe.model, base_dir)
    cfg = llm.config
    text = split_text(llm.tokenizer, resolve_path(recipe.data.source["text"], base_dir), recipe.data.text)
    reports: list[StepReport] = []

    # 1. the FP32 baseline: the KV-cache decoder export, checked against torch
    key = cache.key("export-decoder", files=[file_digest(p) for p in _model_files(recipe, base_dir)],
                    opset=recipe.model.opset)
    rec = cache.get("export:baseline", key)
    base_path = artifacts / f"{BASELINE}.onnx"
    if rec is None:
        t0 = time.perf_counter()
        with progress.task("exporting the decoder (KV cache) to ONNX"):
            export_decoder(llm.model, base_path, opset=recipe.model.opset)
            parity = check_decoder_parity(llm.model, base_path, text.prompts[0])
        cache.put("export:baseline", key, {"parity": parity}, [base_path])
        reports.append(StepReport("export-baseline", "export", time.perf_counter() - t0,
                                  {"parity_vs_torch": parity, "model_note": llm.note}))
    else:
        reports.append(StepReport("export-baseline", "export", details={"parity_vs_torch": rec["data"]["parity"],
                                                                         "model_note": llm.note}, cached=True))
    layers = int(cfg.num_hidden_layers)
    kv = int(cfg.num_key_value_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    del llm  # the torch model is not needed past the export

    # 2. the FP32 reference continuations every variant is compared with
    continuations = _reference_continuations(base_path, recipe, text, (kv, head_dim, layers))

    # 3. weight-only quantization, once per engine the targets need
    engines = sorted({ENGINES[t.runtime] for t in target_specs if t.runtime in ENGINES})
    variants: dict[str, tuple[Path, str]] = {}  # engine -> (model, precision)
    for i, kind in enumerate(recipe.step_kinds()):
        step_cfg = getattr(recipe.steps[i], kind)
        for engine in engines:
            source = resolve_path(recipe.model.gguf, base_dir) if recipe.model.gguf else None
            variants[engine] = _quantize(engine, step_cfg, base_path, artifacts, layers, text, cache, reports,
                                         progress, (kv, head_dim, layers), source)

    # 4. every (variant, target)
    results = []
    for spec in target_specs:
        results.append(_bench(spec, BASELINE, base_path, "fp32", recipe, run_dir, text, continuations,
                              (kv, head_dim, layers), progress, llm_note=reports[0].details.get("model_note", "")))
        if recipe.steps:
            engine = ENGINES.get(spec.runtime)
            if engine is None:
                results.append(Result(variant=COMPRESSED, target=spec.name, precision="?", status="failed",
                                       error=f"runtime {spec.runtime!r} has no weight-only decoder path "
                                             f"(supported: {', '.join(ENGINES)})"))
                continue
            path, precision = variants[engine]
            results.append(_bench(spec, COMPRESSED, path, precision, recipe, run_dir, text, continuations,
                                  (kv, head_dim, layers), progress))
    report = Report(recipe=recipe.name,
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    environment=describe_environment(recipe.benchmark.threads),
                    steps=[r.to_dict() for r in reports], results=results)
    report.gate_limits = GateLimits.from_mapping(recipe.gates.model_dump()).limits() or None
    run_limits = {k: v for k, v in (report.gate_limits or {}).items() if k != "max_latency_increase"}
    report.gates = evaluate_gates(report, GateLimits.from_mapping(run_limits))
    write_report(report, run_dir)
    cache.write_log()
    return report


def _calibration_feeds(text: Any, cache_shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    import numpy as np

    from compressor.export.decoder import cache_names

    kv, hd, layers = cache_shape
    past, _ = cache_names(layers)
    return [{"input_ids": c.reshape(1, -1), **{n: np.zeros((1, kv, 0, hd), np.float32) for n in past}}
            for c in text.calibration]


def _quantize(engine: str, cfg: Any, base: Path, artifacts: Path, layers: int, text: Any, cache: StepCache,
              reports: list[StepReport], progress: Reporter, cache_shape: tuple[int, int, int],
              source: Path | None = None) -> tuple[Path, str]:
    name = f"weight_quantize-{engine}"
    dst = artifacts / (f"{COMPRESSED}.onnx" if engine == "onnxruntime" else f"{COMPRESSED}-openvino.xml")
    precision = f"int{cfg.bits}"
    key = cache.key("weight-quantize", engine=engine, input=file_digest(base), config=cfg.model_dump(mode="json"),
                    calibration=[c.tolist() for c in text.calibration],
                    source=file_digest(source) if source else None)
    rec = cache.get(f"step:{name}", key)
    if rec is not None:
        reports.append(StepReport(name, "weight_quantize", details=rec["data"]["details"], cached=True))
        progress.log(f"[bold]reused[/] {name}")
        return dst, rec["data"]["details"].get("precision", precision)
    if cfg.algorithm == "gguf":  # the source file's own blocks, nothing re-rounded
        from compressor.steps.weight_only.gguf import reencode_step

        t0 = time.perf_counter()
        with progress.task(f"re-encoding the GGUF blocks ({engine})"):
            details = reencode_step(engine, base, dst, Path(source or ""), cfg.accuracy_level)
        cache.put(f"step:{name}", key, {"details": details}, [dst] + ([dst.with_suffix(".bin")] if dst.suffix == ".xml" else []))
        reports.append(StepReport(name, "weight_quantize", time.perf_counter() - t0, details))
        return dst, details["precision"]
    needs_data = cfg.algorithm == "gptq" or cfg.awq or cfg.scale_estimation
    feeds = _calibration_feeds(text, cache_shape) if needs_data else None
    t0 = time.perf_counter()
    with progress.task(f"weight-only INT{cfg.bits} ({engine})"):
        if engine == "onnxruntime":
            from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

            details = quantize_matmul_nbits(base, dst, cfg, layers, feeds)
        else:
            from compressor.steps.weight_only.openvino import compress_openvino

            details = compress_openvino(base, dst, cfg, layers, feeds)
    if feeds:
        details["calibration"] = {"windows": len(feeds), "tokens": int(sum(f["input_ids"].size for f in feeds))}
    files = [dst] + ([dst.with_suffix(".bin")] if dst.suffix == ".xml" else [])
    cache.put(f"step:{name}", key, {"details": details}, files)
    reports.append(StepReport(name, "weight_quantize", time.perf_counter() - t0, details))
    return dst, precision


def _reference_continuations(base: Path, recipe: Recipe, text: Any, cache_shape: tuple[int, int, int]) -> list:
    from compressor.bench.llm import Decoder, greedy
    from compressor.targets.onnxruntime_cpu import OrtSession

    dec = Decoder(OrtSession(base, recipe.benchmark.threads, {}), cache_shape)
    return [greedy(dec, p, recipe.data.text.continuation_tokens) for p in text.prompts]


def _bench(spec: TargetSpec, variant: str, path: Path, precision: str, recipe: Recipe, run_dir: Path, text: Any,
           continuations: list, cache_shape: tuple[int, int, int], progress: Reporter, llm_note: str = "") -> Result:
    from compressor.bench.isolated import run_isolated
    from compressor.bench.llm_job import LlmJob
    from compressor.targets.registry import RUNTIMES, make_target

    b, t = recipe.benchmark, recipe.data.text
    row: dict[str, Any] = {"variant": variant, "target": spec.name, "precision": precision}
    try:
        target = make_target(spec)
        reason = target.unavailable_reason()
        if reason:
            raise TargetFailed(f"unavailable: {reason}")
        out_dir = run_dir / "artifacts" / spec.name
        out_dir.mkdir(parents=True, exist_ok=True)
        job = LlmJob(runtime=RUNTIMES[spec.runtime], spec=spec, variant=variant, precision=precision,
                     out_dir=out_dir, run_dir=run_dir, model=ModelArtifact(variant, precision, path, []),
                     threads=spec.threads or b.threads, cache_shape=cache_shape, tokens=text.evaluation,
                     window=t.window, stride=t.stride, bos=text.bos, prompts=text.prompts,
                     continuations=continuations, timing=b.llm.model_dump(),
                     meta={"note": llm_note} if llm_note else {})
        with progress.task(f"measuring {variant} on {spec.name}") as update:
            measured = run_isolated(job, timeout_s=b.timeout_s, progress=lambda s, k, n: update(k, n, s))
        row.update(measured)
    except CompressorError as e:
        row.update(status="failed", error=str(e))
        progress.log(f"[red]target {spec.name} failed for {variant}:[/] {e}")
    return Result.model_validate(row)
