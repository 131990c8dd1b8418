#!/usr/bin/env bash
# The compiled core on a CUDA machine, in one go: the kernel tests on the GPU (Triton kernels
# compiled for it, not interpreted), then the micro-benchmarks, which write
# reports/kernels/latent_bench_cuda.{md,csv}. Needs python3 with torch, triton, numpy, scipy,
# pytest and pytest-benchmark (nothing is installed). With $OUT set, the logs and the tables
# are also copied there. Then a few steps of presets/gpu.yaml (data, a conv VAE trained on the
# GPU, its evaluation). Run: `make gpu-check` or `bash benchmarks/gpu_check.sh`.
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
# Optional caps in seconds (a lent GPU has minutes): GPU_CHECK_TESTS_S, GPU_CHECK_BENCH_S,
# GPU_CHECK_PRESET_S. SIGINT lets pytest finish its session, so the table of the cases run so
# far is still written. 0 (the default) means no cap.
cap() { timeout -s INT -k 20 "${1:-0}" "${@:2}"; }
cap "${GPU_CHECK_TESTS_S:-0}" "$PY" -m pytest tests/kernels -q -p no:cacheprovider 2>&1 \
  | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
cap "${GPU_CHECK_BENCH_S:-0}" "$PY" -m pytest kernels/bench --benchmark-only -q \
  -p no:cacheprovider 2>&1 | tee "$out/gpu_bench.log"
bench=${PIPESTATUS[0]}
# The draw alone (benchmarks/gpu_draw.py): the kernels' stream against the write floor.
cap "${GPU_CHECK_BENCH_S:-0}" "$PY" benchmarks/gpu_draw.py 2>&1 | tee "$out/gpu_draw.log"
draw=${PIPESTATUS[0]}
if [ "$out" != reports/kernels ]; then  # the table first: the steps below may run out of time
  cp reports/kernels/latent_bench_cuda.md reports/kernels/latent_bench_cuda.csv \
    reports/kernels/gpu_draw_cuda.md "$out/" 2>/dev/null
fi
# A few steps of presets/gpu.yaml on the GPU, in a scratch folder: dSprites (rendered here, no
# download), one conv VAE trained on CUDA with the Triton backend, and its evaluation (CPU).
# Needs the project's own dependencies for $PY (pip install -e .); skipped without them.
# GPU_PRESET_DEVICE=cpu runs the same steps on the CPU (a dry run of this script).
work="$(mktemp -d)"
preset=0
if ! "$PY" -c "import pydantic, typer, matplotlib, sklearn, ruamel.yaml, yaml" 2>/dev/null; then
  echo "presets/gpu.yaml steps skipped: the project's dependencies are not installed for $PY" \
    | tee "$out/gpu_preset.log"
else
"$PY" -m benchmarks.gpu_preset "$work/params.yaml" --device "${GPU_PRESET_DEVICE:-cuda}" 2>&1 \
  | tee "$out/gpu_preset.log"
for step in "data dsprites" "train vae dsprites --seed 0" "evaluate vae dsprites --seed 0"; do
  VAEBENCH_ROOT="$work" VAEBENCH_NO_TRACK=1 cap "${GPU_CHECK_PRESET_S:-0}" \
    "$PY" -m pipelines.${step%% *} ${step#* } \
    --params "$work/params.yaml" 2>&1 | tee -a "$out/gpu_preset.log"
  [ "${PIPESTATUS[0]}" = 0 ] || { preset=1; break; }
done
cp "$work/runs/vae-dsprites/seed0/train/train.json" "$out/gpu_preset_train.json" 2>/dev/null
fi
rm -rf "$work"
echo "kernel tests exit $tests, benchmarks exit $bench, draw exit $draw, presets/gpu.yaml steps exit $preset"
exit $(( tests != 0 || bench != 0 || draw != 0 || preset != 0 ))
