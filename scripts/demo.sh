#!/usr/bin/env bash
# The demo (works offline once installed): make a sample set from the public-domain and CC0
# photos scikit-image ships (each photo plus five edited copies, see lookalike/samples.py),
# index it with the weight-free phash model, find each edited copy's original, and group
# the copies with `lookalike duplicates`. Everything it writes goes to .lookalike-demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_venv.sh "[samples]"

DEMO=.lookalike-demo # gitignored; made afresh on every run
SAMPLES=$DEMO/samples
COLL=$DEMO/collection
rm -rf "$DEMO"

echo "== sample set"
python -m lookalike.samples "$SAMPLES"

echo
echo "== index the originals with phash (a 64-bit perceptual hash: no model weights)"
lookalike index "$SAMPLES/originals" --model phash --collection "$COLL" --no-progress

echo
echo "== search with edited copies: the original comes first"
lookalike search "$SAMPLES/copies/rocket/caption.jpg" "$SAMPLES/copies/chelsea/crop.jpg" \
  -k 2 --collection "$COLL"

echo
echo "== every edited copy, rank 1"
lookalike search "$SAMPLES"/copies/*/*.jpg -k 1 --json --collection "$COLL" | python -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin]
wrong = []
for row in rows:
    photo = row["query"].split("/")[-2]  # copies/<photo>/<edit>.jpg
    top = row["results"][0]["id"] if row["results"] else None
    if top != photo + "/original.jpg":
        wrong.append(row["query"] + " -> " + str(top))
print(f"{len(rows) - len(wrong)} of {len(rows)} edited copies have their original at rank 1")
print("\n".join(wrong), end="\n" if wrong else "")
sys.exit(1 if wrong or not rows else 0)
'

echo
echo "== add the copies; search by item id (the item itself is left out)"
lookalike index "$SAMPLES/copies" --collection "$COLL" --no-progress
lookalike search id:coffee/original.jpg -k 6 --collection "$COLL"

echo
echo "== near-duplicate groups (keeper first, then each copy's similarity to it)"
lookalike duplicates --collection "$COLL"

echo
echo "phash finds near-duplicates (the same photo resized, recompressed, brightened," \
  "lightly cropped or captioned); similarity by content needs a neural model:" \
  "lookalike index --model clip-vit-b32 (or --model-path DIR)."
