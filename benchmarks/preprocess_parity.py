"""Preprocessing parity: our processors and phash against the reference implementations.

Measured on real photos (../shared/datasets/clothing-small), printed as one table:

* max |ours - transformers| in normalised pixel units for the CLIP, BiT (DINOv2) and
  ConvNeXt (ResNet-50) PIL processors (target <= 1e-4);
* JPEG draft decoding (DCT scaling) against full decoding, for large JPEGs made by
  upscaling the same photos 4x: mean and max difference after preprocessing;
* our phash against imagehash.phash: share of identical hashes and mean/max bit distance.

    python benchmarks/preprocess_parity.py [--limit 300]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from typing import Any

import imagehash
import numpy as np
from _data import REPO, dataset_files
from PIL import Image

from lookalike.ingest.decode import decode_image
from lookalike.models.phash import phash_int
from lookalike.models.preprocess import ImageProcessorSpec

sys.path.insert(0, str(REPO / "tests"))
from hf_configs import CLIP_CONFIG, DINOV2_CONFIG, RESNET_CONFIG  # noqa: E402

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "clip-vit-b32": (
        "transformers.models.clip.image_processing_pil_clip.CLIPImageProcessorPil",
        CLIP_CONFIG,
    ),
    "dinov2-small": (
        "transformers.models.bit.image_processing_pil_bit.BitImageProcessorPil",
        DINOV2_CONFIG,
    ),
    "resnet50": (
        "transformers.models.convnext.image_processing_pil_convnext.ConvNextImageProcessorPil",
        RESNET_CONFIG,
    ),
}


def _reference(path: str, config: dict[str, Any]) -> Any:
    import importlib

    logging.getLogger("transformers").setLevel(logging.ERROR)
    module_name, _, cls_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), cls_name).from_dict(config)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=300, help="number of photos (spread over classes)")
    args = ap.parse_args()
    files = dataset_files()
    step = max(1, len(files) // args.limit)
    files = files[::step][: args.limit]
    datas = [f.read_bytes() for f in files]
    images = [decode_image(d).image for d in datas]
    print(f"photos={len(images)} from clothing-small (mostly 400x533 JPEG)")

    print("\n== preprocessing vs transformers' PIL processors (normalised pixel units)")
    print(f"{'model':<14} {'max |diff|':>12} {'mean |diff|':>12}  target")
    for name, (path, config) in CONFIGS.items():
        ref = _reference(path, config)
        ours = ImageProcessorSpec.from_hf_config(config)
        worst, total = 0.0, 0.0
        for im in images:
            expected = ref(im, return_tensors="np")["pixel_values"][0]
            diff = np.abs(ours(im) - expected)
            worst = max(worst, float(diff.max()))
            total += float(diff.mean())
        print(f"{name:<14} {worst:12.2e} {total / len(images):12.2e}  <= 1e-4")

    print("\n== JPEG draft decoding vs full decoding (photos upscaled 4x, JPEG q90)")
    big = []
    for im in images[:100]:
        buf = io.BytesIO()
        im.resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC).save(
            buf, "JPEG", quality=90
        )
        big.append(buf.getvalue())
    print(f"{'model':<14} {'mean |diff|':>12} {'p99 |diff|':>12} {'max |diff|':>12}")
    for name, (_, config) in CONFIGS.items():
        spec = ImageProcessorSpec.from_hf_config(config)
        means, p99s, maxes = [], [], []
        for data in big:
            full = spec(decode_image(data).image)
            drafted = spec(decode_image(data, draft=spec.draft_size()).image)
            d = np.abs(full - drafted)
            means.append(float(d.mean()))
            p99s.append(float(np.percentile(d, 99)))
            maxes.append(float(d.max()))
        print(f"{name:<14} {np.mean(means):12.4f} {np.mean(p99s):12.4f} {np.max(maxes):12.4f}")

    print("\n== our phash vs imagehash.phash (same decoded RGB image)")
    dists = []
    for im in images:
        ours = phash_int(im) & ((1 << 64) - 1)
        theirs = int(str(imagehash.phash(im)), 16)
        dists.append(bin(ours ^ theirs).count("1"))
    arr = np.asarray(dists)
    print(
        f"identical: {np.mean(arr == 0):.1%}  mean bits apart: {arr.mean():.3f}  "
        f"max: {arr.max()}  (of 64)"
    )


if __name__ == "__main__":
    main()
