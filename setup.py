"""Build hook: ship the repository's targets/, recipes/ and examples/ inside the wheel.

The top-level folders stay the one source; building copies them to
``compressor/builtin/`` (read by compressor.utils.builtin), so an installed package
finds its targets and recipes without a checkout. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source folder, glob) -> compressor/builtin/<source folder>/
BUILTIN = [("targets", "*.yaml"), ("recipes", "*.yaml"), ("examples", "*.py"),
           ("examples/pretrained", "*.safetensors"), ("examples/pretrained", "*.json")]


class BuildPyWithBuiltin(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:   # an editable install reads the checkout's folders
            return
        for folder, pattern in BUILTIN:
            dst = Path(self.build_lib) / "compressor" / "builtin" / folder
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted((ROOT / folder).glob(pattern)):
                shutil.copyfile(f, dst / f.name)


setup(cmdclass={"build_py": BuildPyWithBuiltin})
