#!/usr/bin/env bash
# Here, before the GPU call: fill .gpu-carry/ (ignored by git) with what travels besides the
# code (the keras wheels for the device's Python 3.12 and the packed real slices), move the
# bundled model files out of the travelling tree, and check that everything fits the 64 MiB.
# `benchmarks/gpu/prepare.sh restore` puts the model files back.  See REPRODUCE.md, "The
# paper's run on a GPU".
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${UNET_KERAS_DATA:-../shared/data}
ASIDE=.gpu-aside
MODELS="saved_models/sample/model.keras saved_models/sample/model.pt"

if [ "${1:-}" = restore ]; then
  for f in $MODELS; do [ -f "$ASIDE/$(basename $f)" ] && mv "$ASIDE/$(basename $f)" "$f"; done
  git status --short saved_models/sample
  exit 0
fi

mkdir -p .gpu-carry/whl .gpu-carry/data "$ASIDE"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu-carry/whl \
  "keras==$(python3 -c 'from importlib.metadata import version; print(version("keras"))')" namex optree
[ -f .gpu-carry/data/pool.npz ] || python3 benchmarks/gpu/pack.py pack \
  "$DATA/figshare-pool-256" .gpu-carry/data/pool.npz --codec jpeg90
[ -f .gpu-carry/data/test.npz ] || python3 benchmarks/gpu/pack.py pack \
  "$DATA/figshare-png" .gpu-carry/data/test.npz --codec webp
for f in $MODELS; do [ -f "$f" ] && mv "$f" "$ASIDE/"; done

# What travels: tracked files still present, untracked files git does not ignore, and .gpu-carry.
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}' || true)
carry=$(du -sb .gpu-carry | cut -f1)
total=$((tree + carry))
awk -v t="$tree" -v c="$carry" 'BEGIN { m = 1048576; printf "travels: tree %.1f MiB + .gpu-carry %.1f MiB = %.1f MiB (limit 64)\n", t / m, c / m, (t + c) / m }'
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "error: more than 64 MiB would travel; pack with a lower --codec jpeg quality" >&2
  exit 2
fi
echo "ready: run the device command of REPRODUCE.md, then: benchmarks/gpu/prepare.sh restore"
