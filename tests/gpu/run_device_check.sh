#!/usr/bin/env bash
# The one GPU check: run on the device machine from the repository root (the `run` tool):
#   bash tests/gpu/run_device_check.sh        # ~9 minutes at most; log in $OUT/gpu_check.log
# Fails fast, with a clear line, when there is no GPU.
set -u -o pipefail
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # chainrule from the working tree
export PYTHONUNBUFFERED=1

say "device check $(date -u +%FT%TZ) in $PWD"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >>"$LOG" 2>&1; then
    say "FAIL: no NVIDIA GPU here (nvidia-smi missing or failing); nothing checked"
    exit 3
fi
python3 - >>"$LOG" 2>&1 <<'PY' || { say "FAIL: CuPy cannot use the GPU (see above)"; exit 4; }
import cupy, numpy, torch
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "torch cuda", torch.cuda.is_available())
print("GPUs through CuPy:", cupy.cuda.runtime.getDeviceCount())
PY
pip install --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 || say "pip install -e . failed: using PYTHONPATH=src"

say "1/4 NVRTC compile of the fused kernels"
timeout 30 python3 tests/gpu/compile_kernels.py 2>&1 | tee -a "$LOG"

say "2/4 tests on the GPU (--device gpu)"
TESTS=()
for f in test_device test_ops test_nn_conv test_nn_layers test_nn_recurrent test_optim \
         test_losses test_amp test_kernels test_train test_training test_data; do
    if [ -f "tests/$f.py" ]; then TESTS+=("tests/$f.py"); else say "missing: tests/$f.py (skipped)"; fi
done
# CuPy compiles each kernel at first use (NVRTC, ~0.1-0.5 s) into a cache shared by processes:
# spread the tests over 8 processes when pytest-xdist is there
XDIST=()
python3 -c "import xdist" 2>/dev/null && XDIST=(-n 8)
# only the CUDA half of the device-parametrised tests (the CPU half runs on CI), every failure
# listed (one run is all a session gets), at most 40 of them
timeout 270 python3 -m pytest --device gpu -k "cuda or gpu" --maxfail=40 -p no:cacheprovider \
    -o addopts="" -q -rf --durations=10 "${XDIST[@]}" "${TESTS[@]}" 2>&1 | tail -n 250 | tee -a "$LOG"
say "pytest exit: ${PIPESTATUS[0]} (124: timed out)"

say "3/4 the default training run on the GPU (chainrule train --device cuda)"
RUNS=$(mktemp -d)
timeout 60 python3 -m chainrule.cli train --device cuda --out "$RUNS/run" 2>&1 | tail -n 15 | tee -a "$LOG"
say "train exit: ${PIPESTATUS[0]} (124: timed out)"

say "4/4 benchmark (chainrule on CuPy vs PyTorch CUDA), then the MLP/CNN without fused kernels"
timeout 120 python3 benchmarks/bench_gpu.py --rounds 3 --seconds 0.25 2>&1 | tee -a "$LOG"
say "bench exit: ${PIPESTATUS[0]} (124: timed out)"
CHAINRULE_CUDA_KERNELS=0 timeout 35 python3 benchmarks/bench_gpu.py --only mlp cnn1d --modes fp32 \
    --rounds 3 --seconds 0.25 2>&1 | sed 's/^/[no fused kernels] /' | tee -a "$LOG"
timeout 40 python3 benchmarks/bench_gpu.py --only cnn1d cnn2d --modes fp32 --conv direct \
    --rounds 3 --seconds 0.25 2>&1 | sed 's/^/[direct conv] /' | tee -a "$LOG"
say "done $(date -u +%FT%TZ)"
