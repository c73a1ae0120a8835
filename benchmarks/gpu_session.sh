#!/usr/bin/env bash
# The one prepared call for a lent GPU (one H100, 15 minutes of device time in all, at most 10 minutes
# per call): degan-bench's GPU bench suite, optionally against the official code, with its JSON report,
# log and environment under $OUT. See README.md, "Speed evidence on a GPU", for the preparation here:
#
#   echo /.whl/ >> .git/info/exclude; echo /.official/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       clean-fid==0.1.35 torch-fidelity==0.4.0     # missing on the device image
#   git clone --depth 1 https://github.com/NVlabs/stylegan2-ada-pytorch .official/stylegan2-ada-pytorch  # optional
#   git clone --depth 1 https://github.com/mit-han-lab/data-efficient-gans /tmp/deg \
#       && cp -r /tmp/deg/DiffAugment-biggan-cifar .official/                                        # optional
#   (everything carried stays under the 64 MiB a call may carry: the two wheels ~1 MB, the checkouts ~6 MB)
#
# then one device call from the repository root:
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".official"], timeout_s=600)
#
# BENCH_BUDGET_MINUTES (default 7.5) and BENCH_REPS (default 3) size the suite; the report is rewritten
# after every case, so a call that is cut short still returns what it measured.
set -uo pipefail
OUT=${OUT:-runs/gpu-session}
mkdir -p "$OUT"
SUITE=${BENCH_SUITE:-gpu}  # cpu: a dry run of this script on a machine without a GPU
BUDGET=${BENCH_BUDGET_MINUTES:-7.5}
REPS=${BENCH_REPS:-3}
export PYTHONUNBUFFERED=1

# 1. wheels the device image lacks (clean-fid, torch-fidelity), installed beside the image's torch
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/setup-error.txt"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# 2. what machine this was
{ nvidia-smi; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"; } \
  > "$OUT/environment.txt" 2>&1

# 3. official checkouts (optional). stylegan2-ada-pytorch compiles its fused CUDA ops on first use: build
#    them now on the CPU cores, in the background, while our own cases use the GPU
official=()
for checkout in .official/*; do
  [ -d "$checkout" ] && official+=(--official "$checkout")
done
if [ -d .official/stylegan2-ada-pytorch ]; then
  export TORCH_EXTENSIONS_DIR=/tmp/torch_extensions
  (cd .official/stylegan2-ada-pytorch && python3 -c "
from torch_utils.ops import bias_act, upfirdn2d
print('bias_act plugin:', bias_act._init(), '| upfirdn2d plugin:', upfirdn2d._init())
") > "$OUT/official-ops.txt" 2>&1 &
fi

# 4. the suite (its JSON is rewritten after every case)
python3 -m degan_bench bench --suite "$SUITE" --budget-minutes "$BUDGET" --reps "$REPS" ${official[@]+"${official[@]}"} \
  --json "$OUT/bench-$SUITE.json" 2>&1 | tee "$OUT/bench-$SUITE.log"
status=${PIPESTATUS[0]}
wait
exit "$status"
