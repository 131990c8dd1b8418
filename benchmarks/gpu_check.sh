#!/usr/bin/env bash
# The compiled core on a CUDA machine, in one go: the kernel tests on the GPU (Triton kernels
# compiled for it, not interpreted), then the micro-benchmarks, which write
# reports/kernels/latent_bench_cuda.{md,csv}. Needs python3 with torch, triton, numpy, scipy,
# pytest and pytest-benchmark (nothing is installed). With $OUT set, the logs and the tables
# are also copied there. Run: `make gpu-check` or `bash benchmarks/gpu_check.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
out="${OUT:-reports/kernels}"
mkdir -p "$out" reports/kernels
export PYTHONUNBUFFERED=1 VAEBENCH_TEST_DEVICE=cuda
unset TRITON_INTERPRET

"$PY" - <<'PYEOF' 2>&1 | tee "$out/gpu_env.txt"
import datetime, platform, sys
import torch, triton
if not torch.cuda.is_available():
    sys.exit("error: torch sees no CUDA device; this check is for a GPU machine")
print("date", datetime.datetime.now().isoformat(timespec="seconds"))
print("device", torch.cuda.get_device_name(), "| torch", torch.__version__,
      "| triton", triton.__version__, "| python", platform.python_version())
PYEOF
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
"$PY" -m pytest tests/kernels -q -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
"$PY" -m pytest kernels/bench --benchmark-only -q -p no:cacheprovider 2>&1 | tee "$out/gpu_bench.log"
bench=${PIPESTATUS[0]}
if [ "$out" != reports/kernels ]; then
  cp reports/kernels/latent_bench_cuda.md reports/kernels/latent_bench_cuda.csv "$out/" 2>/dev/null
fi
echo "kernel tests exit $tests, benchmarks exit $bench"
exit $(( tests != 0 || bench != 0 ))
