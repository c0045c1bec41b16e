#!/bin/bash
# Device side of the third GPU run (issue 7): what the H200 run left unmeasured.
# The main BBC rows with `mixed_precision: auto` now meaning float32 on this card,
# and, against the shipped recipes, the TextCNN's argmax max-gradient against
# cuDNN's dense backprops and the fused Adam against Keras' class (both recipes).
# TensorFlow is carried and unpacked as ../gpu-h200-2026-11-27/gpu_run.sh does
# (pieces built by its make_bundle.sh). From the repository root:
#   bash benchmarks/gpu-h100-2026-11-27-b/gpu_run.sh STOP_AFTER_MIN
set -uo pipefail
STOP=${1:-5.5}
T0=$(date +%s)
ROOT=$PWD
if [ ! -d /tmp/site312/tensorflow ]; then
  (cd /root/parts && sha256sum -c SHA256SUMS --quiet) || { echo "SETUP: pieces missing or damaged"; ls -l /root/parts; exit 3; }
  cat $(ls /root/parts/part.* | sort) | xz -d -T16 | tar xf - -C /tmp || exit 1
  xz -d < /root/parts/c4c.tar.xz | tar xf - -C /tmp/site312 || exit 1
fi
echo "SETUP: unpacked in $(( $(date +%s) - T0 )) s"
source benchmarks/gpu-h200-2026-11-27/env_part.sh  # TensorFlow -> the image's CUDA 13 libraries
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee $OUT/nvidia-smi.txt
W=/root/bw; rm -rf $W
python3 scripts/bench.py --gpu --datasets bbc --skip extras,peers,process,memory,reference,lstm \
  --ablation-epochs 2 --ablation-match "dense backprops|Keras' Adam" --stop-after "$STOP" \
  --workdir $W --json $OUT/bench_gpu.json --out $OUT/BENCHMARKS_gpu.md 2>&1 \
  | tee $OUT/bench_stdout.txt | grep -E '^\[bench|target|Target|acc '
(cd $W && tar czf $OUT/logs.tgz logs 2>/dev/null)
echo "GPU_RUN: done in $(( $(date +%s) - T0 )) s"
