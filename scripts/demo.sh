#!/usr/bin/env bash
# Set up a virtual environment, index the sample images shipped in examples/images with the
# weight-free phash model (works offline), and search the collection.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_venv.sh ""

COLL=${LOOKALIKE_COLLECTION:-.lookalike-demo}
lookalike index examples/images --model phash --collection "$COLL"
query=$(ls examples/images/dress/*.jpg | head -n 1)
echo
echo "== images most like $query"
lookalike search "$query" -k 5 --collection "$COLL"
echo
echo "== the same, by item id, as JSON"
lookalike search "id:dress/$(basename "$query")" -k 3 --json --collection "$COLL"
echo
lookalike info --collection "$COLL"
