#!/usr/bin/env bash
# On the GPU machine (no TensorFlow, no network): install the carried wheels, unpack the
# slices, run the paper's run under a time budget, and leave at most 8 files in $OUT.
# Usage: bash benchmarks/gpu/device_run.sh [MINUTES] [BACKEND]   (defaults: 6 jax)
set -uo pipefail
MINUTES=${1:-6}
BACKEND=${2:-jax}
OUT=${OUT:-/tmp/out}
CARRY=${CARRY:-.gpu-carry}
WORK=${WORK:-/tmp/paper-run}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=$BACKEND PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G "$CARRY/whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY"/whl/*.whl || exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu/pack.py unpack "$CARRY"/data/pool.npz $WORK/data/pool &&
python3 benchmarks/gpu/pack.py unpack "$CARRY"/data/test.npz $WORK/data/test || exit 4
python3 benchmarks/gpu/paper_run.py --data $WORK/data/pool --test $WORK/data/test \
  --out $WORK/out --minutes "$MINUTES" "${@:3}"
status=$?
# What comes back: 8 files at most, 16 MiB each, 64 MiB in all: run.log (the device command
# tees it), summary.json, results.tar.gz (records, tables, figures, weights.json) and the bf16
# weight shards (4 for the paper's model) if they still fit.
cp $WORK/out/summary.json "$OUT"/ 2>/dev/null
tar -czf "$OUT"/results.tar.gz -C $WORK/out --exclude='*.keras' --exclude='*.pt' \
  --exclude='*.bin' --exclude=backup --exclude=checkpoints --exclude=logs . 2>/dev/null
if [ -d $WORK/out/weights ]; then
  used=$(du -cb "$OUT"/* | tail -1 | cut -f1)
  shards=$(du -cb $WORK/out/weights/*.bin | tail -1 | cut -f1)
  if [ $((used + shards)) -le $((62 * 1048576)) ]; then cp $WORK/out/weights/*.bin "$OUT"/
  else echo "weights left behind: $((shards / 1048576)) MiB do not fit beside the results"; fi
fi
ls -la "$OUT"
exit $status
