"""The models a run benchmarks: the baseline export (a decoder LLM's with its KV cache), the
torch-domain steps' result, and one ONNX-domain result per group of targets that share
quantization settings (decoder LLMs: per weight-only engine)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.context import RunContext
from compressor.data import Dataset
from compressor.errors import CompressorError
from compressor.progress import Reporter
from compressor.recipe.schema import Recipe
from compressor.stepcache import StepCache, file_digest
from compressor.steps.base import Step, StepReport
from compressor.steps.registry import make_step
from compressor.targets.spec import TargetSpec

BASELINE = "baseline"
COMPRESSED = "compressed"


@dataclass
class Variant:
    name: str
    precision: str
    onnx_path: Path | None
    torch_model: Any = None
    targets: list[str] | None = None  # None: every target
    # the FP32 variant this one was made from, whose outputs judge its parity (None: itself).
    # A quantized model is judged against the FP32 model it was quantized from, not against
    # the unpruned original: pruning and distillation change the outputs on purpose.
    made_from: Variant | None = None
    error: str | None = None  # why this variant cannot be made for its targets (their results fail)

    @property
    def parity_reference(self) -> Variant:
        return self.made_from or self


def _model_identity(spec: Any, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the baseline export depends on: factory source, kwargs, weights bytes, inputs, opset."""
    from compressor.models.factory import resolve_file
    from compressor.recipe.paths import split_factory

    factory_file = resolve_file(split_factory(spec.factory)[0])
    weights = Path(spec.weights) if spec.weights else None
    return {"factory": spec.factory, "factory_sha": file_digest(factory_file), "kwargs": spec.factory_kwargs,
            "weights_sha": file_digest(weights), "inputs": specs, "outputs": spec.output_names, "opset": spec.opset}



@dataclass
class DecoderData:
    """What a decoder LLM is measured and calibrated on (``ctx.decoder``)."""

    text: Any  # compressor.data.text's split: evaluation tokens, prompts, calibration windows
    cache_shape: tuple[int, int, int]  # KV heads, head dim, layers
    note: str  # how the model was loaded (e.g. dequantized from GGUF), shown with the baseline
    llm: Any = None  # the loaded compressor.models.llm.LlmModel (steps that rebuild the graph read it)


def _llm_files(spec: Any) -> list[Path]:
    if spec.gguf is not None:
        return [Path(spec.gguf)]
    folder = Path(spec.hf)
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def decoder_domain(recipe: Recipe, ctx: RunContext, progress: Reporter) -> tuple[list[Variant], list[StepReport]]:
    """A decoder LLM's FP32 baseline: loaded, exported with its KV cache (checked against
    torch; cached for resume); sets ``ctx.decoder`` for the steps and benchmarks."""
    from compressor.data.text import split_text
    from compressor.export.decoder import cache_layout, check_decoder_parity, export_decoder
    from compressor.models.llm import load_llm

    progress.log(f"[bold]loading[/] {recipe.model.hf or recipe.model.gguf}")
    llm = load_llm(recipe.model)
    cfg = llm.config
    text = split_text(llm.tokenizer, Path(recipe.data.source["text"]), recipe.data.text)
    cache = ctx.cache or StepCache(ctx.run_dir, reuse=False)
    files = _llm_files(recipe.model)
    key = cache.key("export-decoder", files=[file_digest(p) for p in files], opset=recipe.model.opset)
    rec = cache.get("export:baseline", key)
    path = ctx.artifacts_dir / f"{BASELINE}.onnx"
    t0 = time.perf_counter()
    if rec is None:
        with progress.task("exporting the decoder (KV cache) to ONNX"):
            export_decoder(llm.model, path, opset=recipe.model.opset)
            parity = check_decoder_parity(llm.model, path, text.prompts[0])
        cache.put("export:baseline", key, {"parity": parity}, [path])
    else:
        parity = rec["data"]["parity"]
    report = StepReport("export-baseline", "export", time.perf_counter() - t0 if rec is None else 0.0,
                        {"parity_vs_torch": parity, "model_note": llm.note}, cached=rec is not None)
    ctx.decoder = DecoderData(text, cache_layout(cfg), llm.note, llm)
    return [Variant(BASELINE, "fp32", path)], [report]


def torch_domain(recipe: Recipe, ctx: RunContext, steps: list[Step], eval_data: Dataset,
                  progress: Reporter, needs_torch: bool = False) -> tuple[list[Variant], list[StepReport]]:
    spec = recipe.model
    if spec.domain == "onnx":
        from compressor.models.onnx_input import prepare_onnx_input

        path = prepare_onnx_input(Path(spec.onnx), ctx.artifacts_dir / f"{BASELINE}.onnx")
        torch_steps = [s for s in steps if s.domain == "torch"]
        if torch_steps:
            raise CompressorError(f"step {torch_steps[0].kind!r} needs a torch model; this recipe gives an ONNX model",
                                  hint="use model.factory + weights, or drop the torch-domain steps")
        return [Variant(BASELINE, "fp32", path)], []

    from compressor.export.onnx_export import check_export_parity, export_onnx
    from compressor.models.loader import check_input_fits, input_specs, load_torch_model

    progress.log(f"[bold]loading[/] {spec.factory}")
    model = load_torch_model(spec)
    specs = input_specs(spec)
    check_input_fits(model, specs)
    parity_feeds = eval_data.first(8)
    parity_feeds = {s["name"]: parity_feeds.get(s["name"], next(iter(parity_feeds.values()))) for s in specs}

    def export(m: Any, name: str) -> tuple[Path, dict[str, Any]]:
        with progress.task(f"exporting {name} to ONNX"):
            path = export_onnx(m, ctx.artifacts_dir / f"{name}.onnx", specs, output_names=spec.output_names,
                               opset=spec.opset)
        return path, check_export_parity(m, path, parity_feeds)

    cache = ctx.cache or StepCache(ctx.run_dir, reuse=False)
    identity = _model_identity(spec, specs)
    model_key = cache.key("export-baseline", model=identity)
    rec = cache.get("export:baseline", model_key)
    if rec is not None:
        base_path, base_parity = ctx.artifacts_dir / rec["data"]["output"], rec["data"]["parity"]
        progress.log("[bold]reused[/] the baseline ONNX export")
    else:
        base_path, base_parity = export(model, BASELINE)
        cache.put("export:baseline", model_key, {"output": base_path.name, "parity": base_parity}, [base_path])
    reports = [StepReport("export-baseline", "export", details={"parity_vs_torch": base_parity}, cached=rec is not None)]
    variants = [Variant(BASELINE, "fp32", base_path, torch_model=model)]
    torch_steps = [s for s in steps if s.domain == "torch"]
    name = COMPRESSED if not any(s.domain == "onnx" for s in steps) else f"{COMPRESSED}-fp32"
    # The torch steps are cached as a chain: the ONNX export of their result, and the result
    # as data (weights + architecture edits such as pruning histories; compressor.steps.rebuild),
    # so targets that consume the torch model get it back without re-running the steps.
    chain_key = cache.key("torch-steps", input=model_key, seed=ctx.seed, data=recipe.data.model_dump(mode="json"),
                          steps=[(s.kind, s.name, s.config.model_dump(mode="json")) for s in torch_steps])
    rec = cache.get("torch-steps", chain_key) if torch_steps else None
    rebuilt = _rebuild_chain(model, rec, name, ctx, parity_feeds) if rec is not None and needs_torch else None
    if rec is not None and (rebuilt is not None or not needs_torch):
        reports += [StepReport.from_dict(d) for d in rec["data"]["reports"]]
        variants.append(Variant(name, "fp32", ctx.artifacts_dir / rec["data"]["output"], torch_model=rebuilt))
        progress.log(f"[bold]reused[/] {len(torch_steps)} torch-domain step(s) and their export")
    elif torch_steps:
        import copy

        from compressor.steps.rebuild import chain_structure, save_result

        first_report = len(reports)
        current = copy.deepcopy(model)
        for step in torch_steps:
            current = step.run(current, ctx).eval()
            reports.append(step.report)
        path, par = export(current, name)
        reports.append(StepReport(f"export-{name}", "export", details={"parity_vs_torch": par}))
        variants.append(Variant(name, "fp32", path, torch_model=current))
        torch_files = save_result(current, chain_structure(torch_steps), ctx.artifacts_dir, name)
        cache.put("torch-steps", chain_key, {"output": path.name, "torch_result": name,
                                             "reports": [r.to_dict() for r in reports[first_report:]]},
                  [path, *torch_files])
    return variants, reports


def _rebuild_chain(model: Any, rec: dict[str, Any], name: str, ctx: RunContext,
                   feeds: dict[str, Any]) -> Any:
    """The torch-steps chain's result rebuilt from its record (factory model + saved
    architecture edits + weights), checked against the chain's ONNX export; None when the
    record has no torch result (an older run) or the rebuilt model does not match."""
    import copy

    from compressor.export.onnx_export import check_export_parity
    from compressor.steps.rebuild import rebuild

    if rec["data"].get("torch_result") != name:
        return None
    try:
        rebuilt = rebuild(copy.deepcopy(model), ctx.artifacts_dir, name, ctx)
        check_export_parity(rebuilt, ctx.artifacts_dir / rec["data"]["output"], feeds)
    except CompressorError as e:
        ctx.progress.log(f"[yellow]re-running the torch-domain steps[/]: their saved result cannot be rebuilt ({e})")
        return None
    ctx.progress.log("[bold]rebuilt[/] the torch-domain steps' model from its pruning history and weights")
    return rebuilt


def _quantization_groups(ctx: RunContext, targets: list[TargetSpec]) -> dict[str, list[str]]:
    """Targets by the quantization settings their (runtime, device) fills in (JSON keys)."""
    groups: dict[str, list[str]] = {}
    for t in targets:
        choice = ctx.quant_choices.get(t.name)
        # a target whose format is measured gets its own model: the winner depends on its runtime
        alone = {"measured_for": t.name} if choice is not None and choice.choose == "measure" else {}
        groups.setdefault(json.dumps({**(choice.settings if choice else {}), **alone}, sort_keys=True), []).append(t.name)
    return groups


def _engine_groups(targets: list[TargetSpec], source: Variant) -> tuple[dict[str, list[str]], list[Variant]]:
    """Decoder LLMs: targets by the weight-only engine their runtime runs (JSON keys), and a
    failing variant for the targets whose runtime has none."""
    from compressor.steps.weight_only.step import RUNTIME_ENGINES

    groups: dict[str, list[str]] = {}
    unsupported: dict[str, list[str]] = {}
    for t in targets:
        engine = RUNTIME_ENGINES.get(t.runtime)
        if engine is None:
            unsupported.setdefault(t.runtime, []).append(t.name)
        else:
            groups.setdefault(json.dumps({"engine": engine}), []).append(t.name)
    failed = [Variant(COMPRESSED, "?", None, targets=names, made_from=source, error=f"runtime {runtime!r} has no weight-only decoder "
                      f"path (supported: {', '.join(RUNTIME_ENGINES)})") for runtime, names in unsupported.items()]
    return groups, failed


def onnx_domain(ctx: RunContext, steps: list[Step], source: Variant, targets: list[TargetSpec],
                reports: list[StepReport]) -> list[Variant]:
    """Run the ONNX-domain steps once per group of targets that share quantization settings:
    the settings follow each target's (runtime, device), and what the recipe sets explicitly
    wins (decoder LLMs: once per weight-only engine). Each group gets fresh step objects; with
    several groups their names end ``-g<i>`` (decoder LLMs: ``-<engine>``)."""
    onnx_steps = [s for s in steps if s.domain == "onnx"]
    if not onnx_steps:
        return []
    decoder = ctx.decoder is not None
    groups, failed = _engine_groups(targets, source) if decoder else (_quantization_groups(ctx, targets), [])
    ctx.torch_model = source.torch_model  # for engines that quantize the torch model (INC)
    variants = []
    for gi, (settings, names) in enumerate(groups.items()):
        suffix = f"-{json.loads(settings)['engine']}" if decoder else f"-g{gi}" if len(groups) > 1 else ""
        model: Path = source.onnx_path  # type: ignore[assignment]
        precision = source.precision
        for template in onnx_steps:
            fill = {k: v for k, v in json.loads(settings).items() if k != "measured_for"}
            step = make_step(template.kind, template.config, template.name + suffix, settings=fill, targets=names)
            model = step.run(model, ctx)
            precision = step.output_precision() or precision
            reports.append(step.report)
        variants.append(Variant(COMPRESSED, precision, model, source.torch_model, targets=names, made_from=source))
    return variants + failed
