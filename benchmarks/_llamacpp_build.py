"""Build llama.cpp's ``llama-bench`` and ``llama-perplexity`` from the ``llama-cpp-python``
sdist (its ``vendor/llama.cpp``), cached under the compressor cache folder.

Only PyPI is used: ``pip download --no-binary :all:`` fetches the sdist, CMake + gcc build
the two tools (``nice``, ``-j2``: the machine is shared). A second call finds the binaries.

    python benchmarks/_llamacpp_build.py            # prints the bin folder; ~15 min the first time
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout (and examples/) on sys.path

from compressor.utils.io import cache_dir  # noqa: E402

VERSION = "0.3.36"
TOOLS = ("llama-bench", "llama-perplexity", "llama-tokenize")


def build_dir() -> Path:
    return cache_dir() / "llamacpp" / f"llama-cpp-python-{VERSION}"


def ensure_built(jobs: int = 2) -> Path:
    """The folder holding ``llama-bench`` and ``llama-perplexity`` (built once)."""
    base = build_dir()
    bin_dir = base / "build" / "bin"
    if all((bin_dir / t).exists() for t in TOOLS):
        return bin_dir
    base.mkdir(parents=True, exist_ok=True)
    sdist = base / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--no-binary", ":all:", "-d", str(base), f"llama-cpp-python=={VERSION}"], check=True)
    src = base / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
    if not (src / "CMakeLists.txt").exists():
        with tarfile.open(sdist, "r:gz") as tar:
            tar.extractall(base, filter="data")  # "data": no absolute paths, links or devices
    build = base / "build"
    # Native CPU flags (the measurement is of this machine); no curl, no server/examples.
    subprocess.run(["nice", "cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["nice", "cmake", "--build", str(build), "-j", str(jobs), "--target", *TOOLS], check=True,
                   stdout=subprocess.DEVNULL)
    return bin_dir


if __name__ == "__main__":
    print(ensure_built())
