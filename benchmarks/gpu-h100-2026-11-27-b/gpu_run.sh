#!/bin/bash
# Device side of the third GPU run (issue 7): what the H200 run left unmeasured.
# The main BBC rows with `mixed_precision: auto` now meaning float32 on this card,
# and, against the shipped recipes, the TextCNN's argmax max-gradient against
# cuDNN's dense backprops and the fused Adam against Keras' class (both recipes).
# TensorFlow is carried and unpacked as in ../gpu-h200-2026-11-27/ (pieces built by
# its make_bundle.sh, unpacked by its unpack_part.sh). From the repository root:
#   bash benchmarks/gpu-h100-2026-11-27-b/gpu_run.sh STOP_AFTER_MIN
set -uo pipefail
STOP=${1:-5.5}
T0=$(date +%s)
ROOT=$PWD
source benchmarks/gpu-h200-2026-11-27/unpack_part.sh  # TensorFlow and the BBC corpus package
source benchmarks/gpu-h200-2026-11-27/env_part.sh  # TensorFlow -> the image's CUDA 13 libraries
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/nvidia-smi.txt
W=/root/bw; rm -rf $W
python3 scripts/bench.py --gpu --datasets bbc --skip extras,peers,process,memory,reference,lstm \
  --ablation-epochs 2 --ablation-match "dense backprops|Keras' Adam" --stop-after "$STOP" \
  --workdir $W --json $OUT/bench_gpu.json --out $OUT/BENCHMARKS_gpu.md 2>&1 \
  | tee $OUT/bench_stdout.txt | grep -E '^\[bench|target|Target|acc '
(cd $W && tar czf $OUT/logs.tgz logs 2>/dev/null)
echo "GPU_RUN: done in $(( $(date +%s) - T0 )) s"
