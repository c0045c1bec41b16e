#!/bin/bash
# Device side of the GPU benchmark (issue 7, target 7). The image has no
# TensorFlow: unpack the carried TensorFlow 2.21 (CUDA 12.5 build) and the
# built-in BBC corpus package, point TensorFlow at the image's CUDA 13
# libraries, then run scripts/bench.py --gpu. From the repository root (where
# device commands start): bash benchmarks/gpu-h200-2026-11-27/gpu_run.sh STOP_AFTER_MIN
set -uo pipefail
STOP=${1:-5}
T0=$(date +%s)
ROOT=$PWD
source "$(dirname "$0")/unpack_part.sh"  # TensorFlow and the BBC corpus package
source "$(dirname "$0")/env_part.sh"  # TensorFlow -> the image's CUDA 13 libraries
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/nvidia-smi.txt
W=/root/bw; rm -rf $W
python3 scripts/bench.py --gpu --datasets bbc --skip peers,process,memory,reference,lstm \
  --ablation-epochs 2 --stop-after "$STOP" --workdir $W --json $OUT/bench_gpu.json \
  --out $OUT/BENCHMARKS_gpu.md 2>&1 | tee $OUT/bench_stdout.txt | grep -E '^\[bench|target|Target' 
RNN=$W/runs/bbc_textclf_rnn
[ -f $RNN/run.json ] && timeout 60 python3 -m textclf.cli check $RNN --gradients --n 64 > $OUT/check_rnn.txt 2>&1
tail -25 $OUT/check_rnn.txt 2>/dev/null
(cd $W && tar czf $OUT/logs.tgz logs results 2>/dev/null)
echo "GPU_RUN: done in $(( $(date +%s) - T0 )) s"
