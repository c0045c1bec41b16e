#!/bin/bash
# Device side of the GPU benchmark (issue 7, target 7). The image has no
# TensorFlow: unpack the carried TensorFlow 2.21 (CUDA 12.5 build) and the
# built-in BBC corpus package, point TensorFlow at the image's CUDA 13
# libraries, then run scripts/bench.py --gpu. Usage: gpu_run.sh STOP_AFTER_MIN
set -uo pipefail
STOP=${1:-5}
T0=$(date +%s)
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
if [ ! -d /tmp/site312/tensorflow ]; then
  (cd /root/parts && sha256sum -c SHA256SUMS --quiet) || { echo "SETUP: pieces missing or damaged"; ls -l /root/parts; exit 3; }
  cat $(ls /root/parts/part.* | sort) | xz -d -T16 | tar xf - -C /tmp || exit 1
  xz -d < /root/parts/c4c.tar.xz | tar xf - -C /tmp/site312 || exit 1
fi
echo "SETUP: unpacked in $(( $(date +%s) - T0 )) s"
SP=$(python3 -c "import site; print(site.getsitepackages()[0])")
mkdir -p /tmp/cu12
DIRS=""
find_lib() { find "$SP/nvidia" /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu -name "$1" 2>/dev/null | head -1; }
for pair in libcublas.so.12:libcublas.so.13 libcublasLt.so.12:libcublasLt.so.13 \
            libcufft.so.11:libcufft.so.12 libcusolver.so.11:libcusolver.so.12 \
            libcusparse.so.12:libcusparse.so.12 libcudnn.so.9:libcudnn.so.9 \
            libnvJitLink.so.12:libnvJitLink.so.13 libcurand.so.10:libcurand.so.10; do
  want=${pair%%:*}; have=${pair##*:}
  path=$(find_lib "$want"); [ -z "$path" ] && path=$(find_lib "$have")
  [ -z "$path" ] && { echo "SETUP: no $want or $have"; continue; }
  DIRS="$DIRS:$(dirname "$path")"
  [ "$(basename "$path")" != "$want" ] && ln -sf "$path" "/tmp/cu12/$want"
done
CUDART=$(dirname "$(find /tmp/site312/nvidia -name 'libcudart.so.12' | head -1)")
export LD_LIBRARY_PATH=$(echo "/tmp/cu12:$CUDART$DIRS" | tr ':' '\n' | awk 'NF && !seen[$0]++' | paste -sd:):${LD_LIBRARY_PATH:-}
export PYTHONPATH=/tmp/site312:$ROOT CUDA_CACHE_PATH=/root/nvcache CUDA_CACHE_MAXSIZE=4294967296
export TF_FORCE_GPU_ALLOW_GROWTH=true PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
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
