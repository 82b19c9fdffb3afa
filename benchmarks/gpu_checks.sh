#!/usr/bin/env bash
# Everything to run on a machine with a CUDA GPU, in one go: the GPU tests,
# the kernel variant sweep and the GPU benchmark (~5 min on an H200, most of
# it the benchmark's PyTorch and cupyx peers). Needs CuPy, and for the peers
# PyTorch with CUDA; runs from a checkout without installing it.
#   bash benchmarks/gpu_checks.sh [--no-bench]
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -m pytest -q -m gpu -p no:cacheprovider tests/test_engine_cupy.py tests/test_core_gpu.py \
    || status=1
python benchmarks/gpu_kernel_variants.py || status=1
if [ "${1:-}" != "--no-bench" ]; then
    python benchmarks/run_benchmarks.py --gpu-only || status=1
fi
exit $status
