"""Finished work of a run, keyed by what produced it, so ``--resume`` redoes only the rest.

A record ``<run_dir>/cache/<key>.json`` says "this work finished and produced these
files with these sha256s". The key hashes the input artifact's sha256, the step's
resolved config and the versions of the libraries involved, so a changed input, a
changed setting or a library upgrade never reuses a stale result. Records and
artifacts are written atomically and the record is written *after* its artifacts,
so a record exists only for finished work; a file whose hash no longer matches
invalidates the record.

What is cached: every ONNX artifact (exported baseline, the exported model after the
torch-domain steps, each ONNX-step output) with its step report, and every finished
(variant, target) benchmark result. Torch-domain steps are cached as a chain: their
exported ONNX model and their torch model as data (weights + pruning histories,
compressor.steps.rebuild; see docs/reliability.md).

A ``shared`` store (``compressor sweep``: a folder every node can read) holds copies of
finished step outputs under the same keys, so recipe variants that share a prefix of
steps run it once: a miss in the run's own records is looked up there, its files are
copied into the run folder and the hit is logged with ``shared: true``. Benchmark
results are never shared: a speedup is a ratio of two latencies measured side by side.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.utils.io import atomic_write_json, sha256_file, sha256_json
from compressor.utils.killpoints import checkpoint

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "openvino", "nncf", "executorch", "torchao",
             "torch-pruning", "neural-compressor", "safetensors", "tensorrt")


def library_versions() -> dict[str, str]:
    """Versions of everything that can change a step's output (part of every key)."""
    from compressor.utils.versions import COMPRESSOR_VERSION, package_versions

    return {"compressor": COMPRESSOR_VERSION, "python": platform.python_version(), **package_versions(LIBRARIES)}


@dataclass
class StepCache:
    """Read (when resuming) and write records of finished work under ``run_dir/cache``."""

    run_dir: Path
    reuse: bool
    shared: Path | None = None  # a store of finished steps shared by the variants of a sweep
    log: list[dict[str, Any]] = field(default_factory=list)
    _versions: dict[str, str] | None = None

    @property
    def root(self) -> Path:
        return self.run_dir / "cache"

    def key(self, what: str, **parts: Any) -> str:
        if self._versions is None:
            self._versions = library_versions()
        return sha256_json({"what": what, **parts, "versions": self._versions})[:32]

    def get(self, what: str, key: str) -> dict[str, Any] | None:
        """The record for ``key`` when resuming and all of its files are intact, else the
        shared store's (its files copied into this run), else None."""
        record = _intact(self.root / f"{key}.json", self.run_dir) if self.reuse else None
        if record is None and self.shared is not None and _shareable(what):
            record = self._from_shared(key)
            if record is not None:
                self.log.append({"work": what, "key": key, "reused": True, "shared": True})
                return record
        if record is None:
            return None
        self.log.append({"work": what, "key": key, "reused": True})
        return record

    def _from_shared(self, key: str) -> dict[str, Any] | None:
        assert self.shared is not None
        record = _intact(self.shared / f"{key}.json", self.shared / key)
        if record is None:
            return None
        for rel in record.get("files", {}):
            dst = self.run_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
            shutil.copyfile(self.shared / key / rel, tmp)
            tmp.replace(dst)
        atomic_write_json(self.root / f"{key}.json", record)  # this run's own record, for --resume
        return record

    def put(self, what: str, key: str, data: dict[str, Any], files: list[Path] = ()) -> None:
        """Record finished work (after its files are complete on disk)."""
        checkpoint(f"written:{what}")  # tests kill here: files complete, no record yet
        record = {"work": what, "data": data,
                  "files": {str(f.relative_to(self.run_dir)): sha256_file(f) for f in files}}
        atomic_write_json(self.root / f"{key}.json", record)
        if self.shared is not None and _shareable(what):
            self._publish(key, record)
        self.log.append({"work": what, "key": key, "reused": False})
        checkpoint(f"done:{what}")

    def _publish(self, key: str, record: dict[str, Any]) -> None:
        """Copy finished work into the shared store: files first, the record last (atomically),
        so a reader sees a record only with all of its files; a concurrent writer of the same
        key writes the same bytes."""
        assert self.shared is not None
        for rel in record["files"]:
            dst = self.shared / key / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
            shutil.copyfile(self.run_dir / rel, tmp)
            tmp.replace(dst)
        atomic_write_json(self.shared / f"{key}.json", record)

    def write_log(self) -> None:
        atomic_write_json(self.run_dir / "work_log.json", self.log)


def _intact(record_path: Path, files_root: Path) -> dict[str, Any] | None:
    """A record whose files (relative to ``files_root``) all still match their sha256."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    for rel, digest in record.get("files", {}).items():
        f = files_root / rel
        if not f.is_file() or sha256_file(f) != digest:
            return None
    return record


def _shareable(what: str) -> bool:
    # steps and exports are deterministic functions of their key; benchmark results are
    # measurements of one machine at one time and stay with the run that made them
    return not what.startswith("bench:")


def file_digest(path: Path | None) -> str | None:
    return None if path is None or not Path(path).is_file() else sha256_file(path)


# ----------------------------------------------------------------------------- measurements of this machine


def host_cpu() -> dict[str, Any]:
    """This machine's CPU model string and flags, as a measurement's key names it."""
    model, flags = None, ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "CPU part") and model is None:
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return {"model": model or platform.processor(), "flags": flags, "machine": platform.machine(),
            "cores": os.cpu_count()}


@dataclass
class HostMeasurements:
    """Measurements of this machine that outlive a run (``<cache_dir>/measurements``), keyed by
    the CPU (model + flags), the library versions and what was measured: a re-run, ``--resume``
    or a sweep on the same machine pays once. Unlike step records they hold numbers only, and a
    record from another CPU or another runtime version is never read (its key differs).

        >>> store = HostMeasurements()
        >>> k = store.key("format-choice", model="ab12", settings={})
        >>> store.get(k) is None or isinstance(store.get(k), dict)
        True
    """

    root: Path | None = None

    def __post_init__(self) -> None:
        if self.root is None:
            from compressor.utils.io import cache_dir

            self.root = cache_dir() / "measurements"

    def key(self, what: str, **parts: Any) -> str:
        return sha256_json({"what": what, "cpu": host_cpu(), "versions": library_versions(), **parts})[:32]

    def get(self, key: str) -> dict[str, Any] | None:
        assert self.root is not None
        try:
            data = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict[str, Any]) -> None:
        assert self.root is not None
        atomic_write_json(self.root / f"{key}.json", data)
