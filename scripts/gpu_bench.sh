#!/usr/bin/env bash
# GPU ingest benchmark (benchmarks/gpu_ingest.py) on a machine with no network.
#
#   scripts/gpu_bench.sh prepare       here: fill .gpu/ (wheels, MobileNetV2, photos, queries; < 60 MiB)
#   scripts/gpu_bench.sh remote [ARGS] on the GPU machine, from the repo root with .gpu/
#                                      beside it: install what is missing from .gpu/wheels,
#                                      run the benchmark, table to $OUT/gpu_table.md
#   scripts/gpu_bench.sh quick         here: the same as remote, as a small CPU dry run
#
# .gpu/ is git-ignored: the photos and the model come from ../shared and are never
# committed. With the device tool: run `bash scripts/gpu_bench.sh remote` with carry [".gpu"].
#
# Packages are installed with `pip install --target` + PYTHONPATH rather than into a venv:
# the GPU machine's python3 is itself a venv holding torch, and a new
# `venv --system-site-packages` would see the base interpreter's packages, not torch.
# lookalike itself runs from src/ (PYTHONPATH), so no build backend is needed there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GPU_DIR=$ROOT/.gpu
PY=${PYTHON:-python3}

prepare() {
  local shared=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
  local model=$shared/models/mobilenet-v2-imagenet
  local photos=$shared/datasets/clothing-small/train
  [ -f "$model/model.onnx" ] || { echo "no model at $model (set SHARED)" >&2; exit 1; }
  [ -d "$photos" ] || { echo "no photos at $photos (set SHARED)" >&2; exit 1; }
  rm -rf "$GPU_DIR"
  mkdir -p "$GPU_DIR/wheels"
  # faiss-cpu and onnx2torch are what the GPU machine lacks (it has numpy, pillow, onnx,
  # onnxruntime (CPU), huggingface_hub, torch, torchvision); both wheels run on 3.12.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$GPU_DIR/wheels" faiss-cpu onnx2torch
  mkdir -p "$GPU_DIR/mobilenet-v2-imagenet"
  cp "$model/model.onnx" "$model/preprocessor_config.json" "$GPU_DIR/mobilenet-v2-imagenet/"
  # Held-out queries for the retrieval section: the validation split (label = folder).
  cp -r "$shared/datasets/clothing-small/validation" "$GPU_DIR/queries"
  # Photos: up to PHOTOS files, round robin over the class folders, within what is left of
  # a CARRY_MIB (default 56) MiB carry after the wheels, the model, the queries and the
  # working tree.
  "$PY" - "$photos" "$GPU_DIR" "${PHOTOS:-2000}" <<'EOF'
import os, shutil, subprocess, sys
from pathlib import Path

src, dest, want = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout
tree = sum(os.path.getsize(p) for p in tracked.decode().split("\0") if p and os.path.isfile(p))
used = tree + sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
budget = int(float(os.environ.get("CARRY_MIB", "56")) * 2**20) - used
classes = sorted(d for d in src.iterdir() if d.is_dir())
lists = [sorted(d.glob("*.jpg")) for d in classes]
picked, size, i = [], 0, 0
while len(picked) < want and any(i < len(files) for files in lists):
    for files in lists:
        if i < len(files) and len(picked) < want:
            s = files[i].stat().st_size
            if size + s > budget:
                want = len(picked)
                break
            picked.append(files[i])
            size += s
    i += 1
for f in picked:
    target = dest / "photos" / f.parent.name / f.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f, target)
print(f"photos: {len(picked)} files, {size / 2**20:.1f} MiB (tree {tree / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB)")
EOF
  du -sh --apparent-size "$GPU_DIR"/* | sed 's/^/  /'
  local total
  total=$(du -sm --apparent-size "$GPU_DIR" | cut -f1)
  echo "carry .gpu: ${total} MiB"
  if [ "$total" -ge 60 ]; then echo "too large for the device tool's 64 MiB" >&2; exit 1; fi
}

install_missing() {
  # Installs the carried wheels for modules python cannot import; FORCE_INSTALL=1 always.
  local site=${SITE:-/tmp/lookalike-site}
  local need=()
  if [ -n "${FORCE_INSTALL:-}" ] || ! "$PY" -c "import faiss" 2>/dev/null; then
    need+=("$GPU_DIR"/wheels/faiss_cpu-*.whl)
  fi
  if [ -n "${FORCE_INSTALL:-}" ] || ! "$PY" -c "import onnx2torch" 2>/dev/null; then
    need+=("$GPU_DIR"/wheels/onnx2torch-*.whl)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "${need[@]}"
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
}

run_bench() {
  local out=${OUT:-$GPU_DIR/out}
  mkdir -p "$out"
  install_missing
  "$PY" - <<'EOF' 2>&1 | tee "$out/gpu_env.txt"
import importlib
for name in ("numpy", "PIL", "onnx", "onnxruntime", "faiss", "huggingface_hub", "torch", "torchvision", "onnx2torch", "lookalike"):
    try:
        m = importlib.import_module(name)
        print(f"{name:16} {getattr(m, '__version__', '?'):14} {getattr(m, '__file__', '')}")
    except Exception as exc:
        print(f"{name:16} MISSING: {type(exc).__name__}: {exc}")
from lookalike.models.device import probe_cuda_driver, probe_onnxruntime, probe_torch, resolve_device
print(probe_cuda_driver()); print(probe_onnxruntime()); print(probe_torch())
for spec in ("auto", "cuda"):
    try:
        print(spec, "->", resolve_device(spec).describe())
    except Exception as exc:
        print(spec, "->", type(exc).__name__, exc)
EOF
  command -v nvidia-smi >/dev/null && nvidia-smi -L || true
  set -o pipefail
  PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_ingest.py --images "$GPU_DIR/photos" \
    --queries "$GPU_DIR/queries" --mobilenet "$GPU_DIR/mobilenet-v2-imagenet" \
    --out "$out/gpu_table.md" "$@" 2>&1 |
    tee "$out/gpu_log.txt"
}

case "${1:-}" in
  prepare) prepare ;;
  remote) shift; run_bench "$@" ;;
  quick) shift; run_bench --quick "$@" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
