"""An arm64 ONNX Runtime under qemu-user: accuracy on a phone's INT8 kernels, on an x86 host.

ONNX Runtime's x86 U8S8 kernels without VNNI saturate 16-bit sums; its arm64 kernels
(NEON, dotprod, i8mm) do not. A model quantized for an arm64 device (``ort-mobile``) and
scored on an AVX2 host can lose 25 pp that the phone never loses. This module sets up,
once, an arm64 runtime that qemu-user runs on this x86 machine, and scores models in it:

- Debian's arm64 ``python3.11`` and the libraries it and ONNX Runtime need, fetched with
  ``apt-get download`` from a private apt state (``APT::Architecture=arm64``: the host's
  dpkg gets no foreign architecture) and unpacked with ``dpkg -x`` into a folder;
- the aarch64 wheels of the host's ``onnxruntime`` and ``numpy`` versions
  (``pip download --platform manylinux_2_28_aarch64``), unpacked into a site folder;
- an arm64 ``/proc/cpuinfo`` per qemu CPU model: ONNX Runtime's cpuinfo probe crashes on the
  x86 one. qemu-user looks every absolute path up in its ``-L`` prefix first, so a
  ``proc/cpuinfo`` file in the prefix is what the arm64 process reads: no root, no mount
  namespace.

All of it lives under ``~/.cache/compressor/arm64`` (``$COMPRESSOR_CACHE``); after the first
set-up nothing is downloaded again. ``make arm64-env`` (run by ``make test``/``make demo``)
calls :func:`setup`. Scoring runs :mod:`compressor.bench.arm64_score` under qemu.

    >>> env = setup()                                            # doctest: +SKIP
    >>> outputs, summary = score_outputs(env, Path("m.ort"), data, cpu="cortex-a76")  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import BackendUnavailable, RecipeError, TargetFailed
from compressor.utils.io import atomic_write_json, cache_dir

QEMU_ARM64 = "qemu-aarch64"
#: Debian bookworm's arm64 packages the interpreter, numpy and ONNX Runtime load
DEBS = ("libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libbz2-1.0", "liblzma5",
        "libssl3", "libuuid1", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal")
WHEELS = ("onnxruntime", "numpy")
PLATFORM = "manylinux_2_28_aarch64"
SCORER = Path(__file__).with_name("arm64_score.py")
#: qemu CPU model -> (MIDR part number, /proc/cpuinfo features) written for that model
_CPUINFO = {
    "cortex-a53": ("0xd03", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "cortex-a76": ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                            "lrcpc dcpop asimddp"),
    "neoverse-n2": ("0xd49", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                             "lrcpc dcpop asimddp i8mm bf16"),
}


@dataclass(frozen=True)
class Arm64Env:
    """A set-up arm64 runtime folder (``sysroot``: the .debs unpacked; ``site``: the wheels)."""

    root: Path

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def stamp(self) -> Path:
        return self.root / "ready.json"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / "python3.11"

    def versions(self) -> dict[str, str] | None:
        """What :func:`setup` installed (None when not set up)."""
        try:
            return json.loads(self.stamp.read_text())["versions"]
        except (OSError, ValueError, KeyError):
            return None


def default_root() -> Path:
    return cache_dir() / "arm64"


def wanted_versions() -> dict[str, str]:
    """The host's onnxruntime and numpy versions: the arm64 side runs the same ones."""
    from importlib.metadata import version

    return {name: version(name) for name in WHEELS}


def unavailable_reason(root: Path | None = None) -> str | None:
    """None when the arm64 runtime is set up for this host's versions, else why not and how to fix it."""
    if shutil.which(QEMU_ARM64) is None:
        return f"{QEMU_ARM64} is not installed (Debian's qemu-user: `sudo apt-get install qemu-user`)"
    env = Arm64Env(root or default_root())
    have = env.versions()
    if have is None:
        return f"the arm64 runtime is not set up in {env.root} (run `make arm64-env`)"
    if have != wanted_versions():
        return f"the arm64 runtime in {env.root} has {have}, this host {wanted_versions()} (run `make arm64-env`)"
    return None


def setup(root: Path | None = None, *, log=print) -> Arm64Env:
    """Download (once) and unpack the arm64 runtime; a no-op when it is already there.

    Raises :class:`BackendUnavailable` where it cannot be set up (no qemu-user, no apt-get,
    no network on the first run), naming what is missing."""
    env = Arm64Env(root or default_root())
    if unavailable_reason(env.root) is None:
        return env
    env.root.mkdir(parents=True, exist_ok=True)
    with open(env.root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one set-up at a time (pytest workers, parallel runs)
        if unavailable_reason(env.root) is None:
            return env
        return _setup_locked(env, log)


def _setup_locked(env: Arm64Env, log) -> Arm64Env:
    for tool in (QEMU_ARM64, "apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise BackendUnavailable(f"cannot set up the arm64 runtime: {tool} is not installed",
                                     hint="Debian/Ubuntu with qemu-user: `sudo apt-get install qemu-user`")
    env.root.mkdir(parents=True, exist_ok=True)
    versions = wanted_versions()
    with tempfile.TemporaryDirectory(prefix=".setup-", dir=env.root) as tmp:
        work = Path(tmp)
        debs = _download_debs(env.root / "debs", work, log)
        wheels = _download_wheels(env.root / "wheels", versions, log)
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(work / "sysroot")], "unpacking " + deb.name)
        for wheel in wheels:
            shutil.unpack_archive(str(wheel), str(work / "site"), format="zip")
        for name in ("sysroot", "site"):
            shutil.rmtree(env.root / name, ignore_errors=True)
            os.replace(work / name, env.root / name)
    for old in env.root.glob("cpu-*"):  # per-CPU prefixes point into the old sysroot
        shutil.rmtree(old, ignore_errors=True)
    probe = _probe(env)
    if probe.get("onnxruntime") != versions["onnxruntime"] or probe.get("machine") != "aarch64":
        raise BackendUnavailable(f"the arm64 runtime in {env.root} does not start: {probe}")
    atomic_write_json(env.stamp, {"versions": versions, "debs": [d.name for d in debs],
                                  "wheels": [w.name for w in wheels]})
    log(f"arm64 runtime ready in {env.root} (onnxruntime {versions['onnxruntime']}, numpy {versions['numpy']})")
    return env


def _run(cmd: list[str], what: str, **kw: Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[-1]
        raise BackendUnavailable(f"arm64 runtime set-up failed {what}: {last}")
    return proc


def _download_debs(folder: Path, work: Path, log) -> list[Path]:
    """The arm64 .debs (kept in ``folder``: a later set-up reuses them offline)."""
    have = {p.name.split("_")[0]: p for p in folder.glob("*_arm64.deb")}
    if all(name in have for name in DEBS):
        return [have[name] for name in DEBS]
    log(f"downloading Debian's arm64 python3.11 ({len(DEBS)} packages) into {folder}")
    state = work / "apt"
    for sub in ("lists/partial", "archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    # a private apt state: the host's package lists and dpkg architectures stay untouched
    opts = [f"-oDir::State={state}", f"-oDir::State::status={state / 'status'}", f"-oDir::Cache={state}",
            "-oAPT::Architecture=arm64", "-oAPT::Architectures::=arm64", "-oDebug::NoLocking=1",
            "-oAPT::Sandbox::User=root", "-qq"]
    _run(["apt-get", *opts, "update"], "updating the arm64 package lists")
    got = work / "debs"
    got.mkdir()
    _run(["apt-get", *opts, "download", *DEBS], "downloading the arm64 packages", cwd=got)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.deb"):
        old.unlink()
    for deb in got.glob("*.deb"):
        os.replace(deb, folder / deb.name)
    return _download_debs(folder, work, log)


def _download_wheels(folder: Path, versions: dict[str, str], log) -> list[Path]:
    """The aarch64 wheels of ``versions`` (kept in ``folder``, reused offline)."""
    pins = [f"{n}=={v}" for n, v in versions.items()]
    found = [next(iter(sorted(folder.glob(f"{n}-{v}-*aarch64*.whl"))), None) for n, v in versions.items()]
    if all(found):
        return [p for p in found if p]
    log(f"downloading the aarch64 wheels {' '.join(pins)} into {folder}")
    _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", "--platform", PLATFORM, "--python-version", "3.11", "-d", str(folder), *pins],
         "downloading the aarch64 wheels")
    found = [next(iter(sorted(folder.glob(f"{n}-{v}-*aarch64*.whl"))), None) for n, v in versions.items()]
    if not all(found):
        raise BackendUnavailable(f"pip download gave no aarch64 wheel for {pins} in {folder}")
    return [p for p in found if p]


def cpu_prefix(env: Arm64Env, cpu: str) -> Path:
    """qemu's ``-L`` prefix for ``cpu``: links to the sysroot plus that CPU's ``proc/cpuinfo``."""
    prefix = env.root / f"cpu-{cpu}"
    if (prefix / "proc" / "cpuinfo").exists():
        return prefix
    tmp = Path(tempfile.mkdtemp(prefix=f".cpu-{cpu}-", dir=env.root))
    for entry in env.sysroot.iterdir():
        (tmp / entry.name).symlink_to(entry)
    (tmp / "proc").mkdir()
    (tmp / "proc" / "cpuinfo").write_text(cpuinfo(cpu, os.cpu_count() or 1))
    try:
        os.replace(tmp, prefix)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return prefix


def cpuinfo(cpu: str, count: int) -> str:
    """An arm64 ``/proc/cpuinfo`` for the qemu CPU model ``cpu`` with ``count`` processors."""
    part, features = _CPUINFO.get(cpu, _CPUINFO["cortex-a76"])
    block = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {p}\nCPU revision\t: 0\n\n")
    return "".join(block.format(i=i, f=features, p=part) for i in range(count))


#: newer qemu CPU models -> an older qemu's model with the same INT8 instructions (qemu 7.2 has
#: no neoverse-n2; ``max`` has dotprod and i8mm)
_OLDER_QEMU = {"neoverse-n2": "max", "neoverse-v1": "max"}


def qemu_model(cpu: str) -> str:
    """``cpu``, or the stand-in this qemu-aarch64 has for it (see ``_OLDER_QEMU``)."""
    qemu = shutil.which(QEMU_ARM64)
    if qemu is None:
        raise BackendUnavailable(f"{QEMU_ARM64} is not installed", hint="`sudo apt-get install qemu-user`")
    models = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True, check=False).stdout.split()
    if cpu in models:
        return cpu
    if _OLDER_QEMU.get(cpu) in models:
        return _OLDER_QEMU[cpu]
    raise RecipeError(f"--emulate-cpu: {QEMU_ARM64} has no CPU model {cpu!r}",
                      hint="arm64 profiles: arm64 (cortex-a53), arm64-dotprod (cortex-a76), arm64-i8mm; "
                           f"models: `{QEMU_ARM64} -cpu help`")


def command(env: Arm64Env, cpu: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the arm64 python with ``args`` under ``cpu``
    (the /proc/cpuinfo is ``cpu``'s; qemu runs :func:`qemu_model` of it)."""
    qemu = shutil.which(QEMU_ARM64)
    if qemu is None:
        raise BackendUnavailable(f"{QEMU_ARM64} is not installed", hint="`sudo apt-get install qemu-user`")
    run_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/tmp"),
               "PYTHONPATH": str(env.site), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # -s: no user site; -P: the script's folder (compressor/bench) is not put on sys.path
    return [qemu, "-cpu", qemu_model(cpu), "-L", str(cpu_prefix(env, cpu)), str(env.python), "-s", "-P", *args], \
        run_env


def _probe(env: Arm64Env) -> dict[str, Any]:
    code = ("import json, platform, onnxruntime as o; "
            "print(json.dumps({'onnxruntime': o.__version__, 'machine': platform.machine()}))")
    cmd, run_env = command(env, "cortex-a76", ["-c", code])
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False, timeout=300)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()[-1]}


def score_outputs(env: Arm64Env, model: Path, data: Dataset, *, cpu: str, settings: dict[str, Any] | None = None,
                  batch: int = 32, timeout_s: float = 3600) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run ``model`` (.onnx or .ort) on ``data`` with the arm64 ONNX Runtime under qemu CPU ``cpu``:
    its outputs (the caller computes the metrics) and the scorer's summary."""
    with tempfile.TemporaryDirectory(prefix="compressor-arm64-") as tmp:
        feeds = Path(tmp) / "data.npz"
        arrays = dict(data.inputs)
        if {"y", "reference"} & set(arrays):
            raise TargetFailed("arm64 emulation: a model input named 'y' or 'reference' clashes with the scorer's "
                               ".npz keys (labels, reference outputs)")
        if data.labels is not None:
            arrays["y"] = data.labels
        np.savez(feeds, **arrays)
        outs, summary = Path(tmp) / "outputs.npz", Path(tmp) / "summary.json"
        args = [str(SCORER), str(model.resolve()), str(feeds), "--outputs", str(outs), "--json", str(summary),
                "--settings", json.dumps(settings or {}), "--batch", str(batch)]
        cmd, run_env = command(env, cpu, args)
        try:
            proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetFailed(f"arm64 emulation of {model.name} timed out after {timeout_s:g} s") from None
        if proc.returncode != 0 or not outs.exists():
            last = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()[-1]
            raise TargetFailed(f"arm64 emulation ({cpu}) of {model.name} failed: {last}")
        with np.load(outs, allow_pickle=False) as z:
            outputs = [z[f"out{i}"] for i in range(len(z.files))]
        return outputs, {**json.loads(summary.read_text()), "qemu_cpu": cmd[2]}


def main() -> int:
    """``python -m compressor.bench.arm64_env``: set the runtime up (``make arm64-env``)."""
    try:
        setup()
    except BackendUnavailable as e:
        print(f"note: {e}; arm64 targets are scored on this host's kernels (accuracy_kernels: host)", file=sys.stderr)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
