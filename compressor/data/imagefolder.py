"""``{imagefolder: DIR}``: labelled images laid out as ``DIR/<split>/<class>/<image>``.

One class per sub-folder; classes are numbered in sorted order of their names, over the
union of every split's folders, so ``train`` and ``test`` agree on the labels even when
one split lacks a class. Images are read with Pillow (no torchvision), scaled to [0, 1]
float32 and stacked ``[N, C, H, W]``: C is 1 when every image is greyscale, else 3 (RGB).
All images must have one size: resize them beforehand (a silent resize would change
what the model sees).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_GREY_MODES = ("1", "L", "I", "I;16", "F")
LAYOUT_HINT = "lay the images out as <dir>/<split>/<class>/<image>, e.g. data/train/cat/0001.png"


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_names(root: Path) -> list[str]:
    """The sorted class names: the union of the class folders of every split under ``root``."""
    return sorted({c.name for split in _subdirs(root) for c in _subdirs(split)})


def load_imagefolder(root: str | Path, split: str, base_dir: Path | None = None) -> Dataset:
    """One split of an image folder as a Dataset (``input`` ``[N, C, H, W]``, int64 labels)."""
    root = Path(root)
    if not root.is_absolute() and base_dir is not None:
        root = base_dir / root
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist", hint=LAYOUT_HINT)
    split_dir = root / split
    if not split_dir.is_dir():
        found = ", ".join(p.name for p in _subdirs(root)) or "none"
        raise DataError(f"image folder {root} has no {split!r} split folder (found: {found})", hint=LAYOUT_HINT)
    classes = class_names(root)
    files = [(f, label) for label, name in enumerate(classes) if (split_dir / name).is_dir()
             for f in sorted((split_dir / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"image folder {split_dir} has no images in class folders", hint=LAYOUT_HINT)
    try:
        from PIL import Image
    except ImportError:
        raise DataError("the imagefolder data source needs Pillow", hint="pip install pillow") from None

    opened = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                opened.append((im.mode, im.size))
        except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
            raise DataError(f"cannot read image {f}: {e}") from None
    (w0, h0) = opened[0][1]
    odd = next(((f, size) for (f, _), (_, size) in zip(files, opened) if size != (w0, h0)), None)
    if odd is not None:
        (f, (w, h)) = odd
        raise DataError(f"images in {split_dir} differ in size: {files[0][0].relative_to(split_dir)} is {w0}x{h0}, "
                        f"{f.relative_to(split_dir)} is {w}x{h}", hint="resize the images to one size beforehand")
    mode = "L" if all(m in _GREY_MODES for m, _ in opened) else "RGB"
    arrays = []
    for f, _ in files:
        with Image.open(f) as im:
            a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        arrays.append(a[None] if mode == "L" else a.transpose(2, 0, 1))
    x = np.stack(arrays)
    y = np.array([label for _, label in files], dtype=np.int64)
    return Dataset({"input": x}, y, f"{root.name}/{split}", {"classes": classes})
