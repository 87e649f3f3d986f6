#!/usr/bin/env bash
# GPU check (docs/speed.md): the CUDA tests, then sampling and training throughput per network
# runtime with the paper's ImageNet networks (base 64², relay 256², batch 8), against the official
# samplers on the same GPU and weights. Writes JSON, the test report and a rendered README.md.
# Under 8 minutes on one H100/H200 (each part stops at its time limit).
#
#   bash benchmarks/gpu_check.sh [OUTDIR]     # default: $OUT if set, else benchmarks/results/gpu
#
# Needs a Python with a CUDA build of torch, numpy, scipy, safetensors, pillow and pytest; the
# package is used from src/ (no install). PYTHON picks the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/results/gpu}}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"

"$PY" -c 'import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: this torch sees no CUDA device")
print("gpu_check:", torch.cuda.get_device_name(0), "| torch", torch.__version__,
      "| CUDA", torch.version.cuda, "| devices", torch.cuda.device_count())' || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUTDIR/nvidia-smi.csv" 2>&1

status=0
t=$SECONDS
timeout 100 "$PY" -m pytest -q -m cuda tests/test_cuda.py --junitxml "$OUTDIR/cuda-tests.xml" \
    2>&1 | tee "$OUTDIR/cuda-tests.log" || status=1
echo "== cuda tests: $((SECONDS - t)) s"

# compiled runtimes last: a compile that outruns the limit loses only its own row's time
RUNTIMES=fp32,fp32_channels_last,bf16_channels_last,fp16_channels_last,bf16_channels_last_compiled
"$PY" -m benchmarks --outdir "$OUTDIR" --only sampling,training --timeout 190 \
    --note "benchmarks/gpu_check.sh: paper ImageNet networks, batch 8" \
    --extra sampling="--device cuda --sections official,chains --official-networks paper \
        --official-images 8 --official-repeats 3 --repeats 3 --runtimes $RUNTIMES" \
    --extra training="--device cuda --sections runtimes --runtime-config 'relay-256 (imagenet256-stage2)' \
        --batch 8 --steps 10 --runtimes $RUNTIMES" || status=1
echo "== gpu_check: $((SECONDS - t)) s, exit $status; results in $OUTDIR"
exit $status
