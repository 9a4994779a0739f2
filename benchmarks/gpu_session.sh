#!/usr/bin/env bash
# Everything jmeta measures on a lent GPU, in one lease, most important first.
# Run from the repository root; results go to $OUT (default /tmp/jmeta-gpu).
# Wheels of optional peers (higher, torchopt and their needs) may sit in .whl/.
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/jmeta-gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
start=$SECONDS
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import jax, torch, flax, optax; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# 1. Throughput (JAX group, then PyTorch group, each with its own time budget).
timeout "${THROUGHPUT_TIMEOUT:-420}" python3 -m benchmarks.throughput --suite "${SUITE:-gpu}" \
  --budget-s "${JAX_BUDGET:-240}" "${TORCH_BUDGET:-70}" --grace-s 45 --out "$OUT" 2>&1 | tee "$OUT/throughput.log"
for records in "$OUT"/throughput_*.jsonl; do  # cut short: report what was measured
  [ -e "$records" ] && python3 -m benchmarks.throughput --report-from "$records" --suite "${SUITE:-gpu}" --out "$OUT" \
    --machine "$(basename "$records" .jsonl | sed 's/^throughput_//')" | tail -3
done
echo "throughput done at $((SECONDS - start)) s"

# 2. Memory: inner steps x remat x precision, from compiled analysis and the allocator.
[ "${MEMORY_TIMEOUT:-60}" -gt 0 ] && timeout "${MEMORY_TIMEOUT:-60}" python3 benchmarks/memory.py --quick --out "$OUT/memory.md" 2>&1 | tail -40 | tee "$OUT/memory.log"
echo "all done at $((SECONDS - start)) s"
