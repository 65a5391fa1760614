#!/usr/bin/env bash
# The CUDA path in one script, within ~10 minutes on one GPU (docs/performance.md, "GPU"):
#
#   1. the device-dependent tests on the GPU     PYROVAE_TEST_DEVICE=cuda pytest tests/training/test_device.py
#   2. the main job on the GPU                    pyrovae train configs/mnist.toml --set device=cuda
#   3. its K = 5000 test NLL (10,000 images)      pyrovae evaluate RUN --nll-samples 5000 --device cuda
#   4. training throughput against hand-written PyTorch on the same GPU
#                                                 python -m benchmarks.train_speed --device cuda
#   5. a summary: the main job's numbers beside the CPU's, and the throughput ratios against
#      the goals (>= 0.9x the hand-written VAE at batch 128, >= 0.95x at 1024)
#
# Usage (from the repository root):
#   bash benchmarks/gpu_check.sh                  # DEVICE=cuda, full sizes
#   QUICK=1 DEVICE=cpu bash benchmarks/gpu_check.sh   # a smoke run of the script itself
# Environment: PY (python with pyrovae installed; default .venv/bin/python, else python3),
# OUT (results folder; default benchmarks/results/gpu), DEVICE, QUICK.
# Every step's log and result files go to $OUT; a step that fails is reported and the script
# goes on, so one run shows everything that breaks; the exit status is the number of failed
# steps.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
OUT=${OUT:-benchmarks/results/gpu}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
FAILED=0

step() {  # step NAME TIMEOUT_S COMMAND...: run it, log to $OUT/NAME.log, time it
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local code=$?
  echo "   exit $code after $((SECONDS - start)) s (log: $OUT/$name.log)"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   | /'
  [ $code -eq 0 ] || FAILED=$((FAILED + 1))
  echo "$name $code $((SECONDS - start))" >>"$OUT/steps.txt"
}

: >"$OUT/steps.txt"
"$PY" - "$DEVICE" <<'EOF' | tee "$OUT/device.txt" || exit 99
import sys, torch, pyro, pyrovae
dev = sys.argv[1]
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"DEVICE={dev} but torch {torch.__version__} sees no CUDA GPU")
name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
print(f"device {dev}: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"pyro {pyro.__version__}, pyrovae {pyrovae.__version__}")
EOF

if [ "$QUICK" = 1 ]; then
  TRAIN_SET=(--set epochs=1 --set data.train_size=6400 --set data.test_size=1000)
  EVAL_SET=(--nll-samples 100 --points 500)
  SPEED_SET=(--quick --batch-sizes 128 --reps 2)
else
  TRAIN_SET=()
  EVAL_SET=(--nll-samples 5000)
  SPEED_SET=(--batch-sizes 128 1024 --reps 3)
fi

step device_tests 300 env PYROVAE_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider \
  tests/training/test_device.py
step main_job 300 "$PY" -m pyrovae train configs/mnist.toml --set device="$DEVICE" \
  --set progress=false "${TRAIN_SET[@]}" --out "$OUT/mnist" --force
step nll_5000 300 "$PY" -m pyrovae evaluate "$OUT/mnist" --device "$DEVICE" --quiet "${EVAL_SET[@]}"
step train_speed 400 "$PY" -m benchmarks.train_speed --device "$DEVICE" "${SPEED_SET[@]}" \
  --out "$OUT/train_speed.json"

"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
print("| step | exit | seconds |\n|---|---|---|")
for line in (out / "steps.txt").read_text().split("\n"):
    if line.strip():
        name, code, secs = line.split()
        print(f"| {name} | {code} | {secs} |")
m, e = read(out / "mnist" / "metrics.json"), read(out / "mnist" / "eval.json")
if m:
    print(f"\nmain job on {m['device']}: test ELBO {m['test_elbo']:.2f} after {m['epochs']} "
          f"epochs, {m['seconds']:.1f} s of training, {m['train_samples_per_second']:,.0f} "
          f"samples/s (CPU, docs: -102.2 nats, 24 s)")
if e:
    print(f"test NLL (K = {e['nll_samples']}, {e['num_points']} images): {e['test_nll']:.2f} "
          f"in {e['nll_seconds']:.1f} s (CPU, docs: 96.49)")
s = read(out / "train_speed.json")
if s:
    goals = {"128": 0.9, "1024": 0.95}
    print("\n| batch | torch-reference samples/s | pyrovae default | ratio | goal |\n|---|---|---|---|---|")
    for b, res in s["results"].items():
        ref = res["torch-reference"]["median"]
        mine = next(v for k, v in res.items() if k.endswith("[fast=True]"))
        print(f"| {b} | {ref:,.0f} | {mine['median']:,.0f} | "
              f"{mine['ratio_to_torch_reference']:.2f} | >= {goals.get(b, 0.9)} |")
EOF
echo "failed steps: $FAILED (results in $OUT)"
exit $FAILED
