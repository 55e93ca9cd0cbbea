"""MobileNetV2 (ImageNet backbone) fine-tuned briefly on Fashion-MNIST, then FP32 vs INT8
top-1 on the labelled test set, alone (benchmarks/mobilenet_int8.py runs it too):

    python benchmarks/fashion_finetune.py [--openvino]    # writes benchmarks/out/fashion_finetune.json

The work is in benchmarks/_fashion_finetune.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import ROOT, lscpu_summary  # puts the checkout on sys.path
from _fashion_finetune import finetune_and_quantize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openvino", action="store_true", help="also score every model on compressor's OpenVINO target")
    ap.add_argument("--train-samples", type=int, default=4000)
    ap.add_argument("--test-samples", type=int, default=2000)
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "out" / "fashion_finetune"
    out.mkdir(parents=True, exist_ok=True)
    res = finetune_and_quantize(out, args.train_samples, args.test_samples, openvino=args.openvino)
    res.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu=lscpu_summary(), load_end=os.getloadavg())
    (ROOT / "benchmarks" / "out" / "fashion_finetune.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
