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

say "1/3 NVRTC compile of the fused kernels"
timeout 60 python3 tests/gpu/compile_kernels.py 2>&1 | tee -a "$LOG"

say "2/3 tests on the GPU (--device gpu)"
TESTS=()
for f in test_device test_ops test_nn_conv test_nn_layers test_nn_recurrent test_optim \
         test_losses test_amp test_kernels test_train; do
    if [ -f "tests/$f.py" ]; then TESTS+=("tests/$f.py"); else say "missing: tests/$f.py (skipped)"; fi
done
# only the CUDA half of the device-parametrised tests (the CPU half runs on CI), every failure
# listed (one run is all a session gets), at most 40 of them
timeout 330 python3 -m pytest --device gpu -k "cuda or gpu" --maxfail=40 -p no:cacheprovider \
    -o addopts="" -q -rf --durations=10 "${TESTS[@]}" 2>&1 | tail -n 250 | tee -a "$LOG"
say "pytest exit: ${PIPESTATUS[0]} (124: timed out)"

say "3/3 benchmark (chainrule on CuPy vs PyTorch CUDA)"
timeout 150 python3 benchmarks/bench_gpu.py --rounds 3 --seconds 0.25 2>&1 | tee -a "$LOG"
say "bench exit: ${PIPESTATUS[0]} (124: timed out)"
say "done $(date -u +%FT%TZ)"
