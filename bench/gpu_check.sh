#!/usr/bin/env bash
# The GPU paths, checked in one go on a machine with a CUDA GPU (a few minutes): capture against
# eager output_attentions on the device, `apmae extract --device cuda`, a one-process NCCL
# torchrun extract, and `--device-map auto`; the three extractions must agree on every
# completion. One PASS/FAIL/SKIP line per check; exit status 1 if any failed.
#   bench/gpu_check.sh            # after: pip install torch==<cuda build> -e '.[dev]' accelerate
#   DEVICE=cpu bench/gpu_check.sh # the same script on the CPU (gloo, no device map): a dry run
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
export APMAE_HOME=$(mktemp -d)
trap 'rm -rf "$APMAE_HOME"' EXIT
failed=0
line() { echo "$1 $2"; [ "$1" = FAIL ] && failed=1; return 0; }

if [ "$DEVICE" = cuda ] && ! $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "SKIP every check: no CUDA device visible to torch ($($PY -c 'import torch; print(torch.__version__)'))"
    exit 0
fi
$PY -c 'import torch; print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)'

# 1. capture = eager attention on the device
$PY -m bench.gpu_check --device "$DEVICE" || failed=1

# scenarios: 2 per task from the test fixtures (no JDK needed on the GPU machine)
$PY -m apmae mine tests/fixtures/java --out "$APMAE_HOME/sc.jsonl" --per-task 2 --seed 0 >/dev/null 2>&1 \
    || { line FAIL "mine: apmae mine tests/fixtures/java failed"; exit 1; }

timed() {  # name, then the command: PASS with seconds, or FAIL with the last error line
    local name=$1; shift
    local t0=$SECONDS out
    if out=$("$@" 2>&1); then line PASS "$name ($((SECONDS - t0)) s)"
    else line FAIL "$name: $(echo "$out" | grep -v '^\s*$' | tail -1)"; fi
}
# 2. single process on the device
timed "extract --device $DEVICE" $PY -m apmae extract --scenarios "$APMAE_HOME/sc.jsonl" --run one --device "$DEVICE" --batch-size 8
# 3. torchrun, one process (NCCL joins on CUDA; gloo on the CPU)
timed "torchrun (1 process) extract --device $DEVICE" \
    torchrun --standalone --nproc_per_node 1 -m apmae -- extract --scenarios "$APMAE_HOME/sc.jsonl" --run dist --device "$DEVICE" --batch-size 8
# 4. layers placed by accelerate
if [ "$DEVICE" = cuda ]; then
    if $PY -c 'import accelerate' 2>/dev/null; then
        timed "extract --device-map auto" $PY -m apmae extract --scenarios "$APMAE_HOME/sc.jsonl" --run mapped --device-map auto --batch-size 8
    else line SKIP "extract --device-map auto: pip install accelerate"; fi
fi
# 5. every extraction gave the same completions and first-token verdicts
$PY - "$APMAE_HOME" <<'PY' || failed=1
import sys
from apmae.run import Run
runs = {name: {r["id"]: (r["completion"], r["correct_first_token"]) for r in Run(name).results()}
        for name in ("one", "dist", "mapped") if Run(name).results_path.exists()}
base = runs.get("one", {})
bad = [n for n, rows in runs.items() if rows != base]
print(("FAIL" if bad or not base else "PASS")
      + f" the same completions in {', '.join(runs)} ({len(base)} scenarios)" + (f"; differ: {bad}" if bad else ""))
sys.exit(1 if bad or not base else 0)
PY
exit $failed
