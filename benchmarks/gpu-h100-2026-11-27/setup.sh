#!/bin/bash
# Device-side bootstrap for the GPU benchmark in this workplace (its image has no
# TensorFlow): unpack the carried TensorFlow 2.21 (CUDA 12.5 build) and point it
# at the image's CUDA 13 libraries under the sonames it asks for.
set -uo pipefail
T0=$(date +%s)
if [ ! -d /tmp/site312/tensorflow ]; then
  cd /root/parts || exit 1
  sha256sum -c SHA256SUMS --quiet || { echo "SETUP: chunk checksum mismatch"; exit 1; }
  if command -v xz >/dev/null; then
    cat $(ls part.* | sort) | xz -d -T16 | tar xf - -C /tmp || exit 1
  else
    cat $(ls part.* | sort) | python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer, 1<<24)" | tar xf - -C /tmp || exit 1
  fi
  cd - >/dev/null
fi
echo "SETUP: unpacked in $(( $(date +%s) - T0 )) s: $(du -sh /tmp/site312 | cut -f1)"
SP=$(python3 -c "import site; print(site.getsitepackages()[0])")
mkdir -p /tmp/cu12
DIRS=""
find_lib() {  # first file named $1 under the image's Python packages or CUDA
  find "$SP/nvidia" /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu -name "$1" 2>/dev/null | head -1
}
# TF's name -> the image's library
for pair in libcublas.so.12:libcublas.so.13 libcublasLt.so.12:libcublasLt.so.13 \
            libcufft.so.11:libcufft.so.12 libcusolver.so.11:libcusolver.so.12 \
            libcusparse.so.12:libcusparse.so.12 libcudnn.so.9:libcudnn.so.9 \
            libnvJitLink.so.12:libnvJitLink.so.13 libcurand.so.10:libcurand.so.10; do
  want=${pair%%:*}; have=${pair##*:}
  path=$(find_lib "$want"); [ -z "$path" ] && path=$(find_lib "$have")
  if [ -z "$path" ]; then echo "SETUP: no $want or $have"; continue; fi
  DIRS="$DIRS:$(dirname "$path")"
  [ "$(basename "$path")" != "$want" ] && ln -sf "$path" "/tmp/cu12/$want"
  echo "SETUP: $want -> $path"
done
CUDART=$(dirname "$(find /tmp/site312/nvidia -name 'libcudart.so.12' | head -1)")
LIBS=$(echo "/tmp/cu12:$CUDART$DIRS" | tr ':' '\n' | awk 'NF && !seen[$0]++' | paste -sd:)
cat > /root/env.sh <<ENV
export PYTHONPATH=/tmp/site312:$PWD
export LD_LIBRARY_PATH=$LIBS:\${LD_LIBRARY_PATH:-}
export CUDA_CACHE_PATH=/root/nvcache CUDA_CACHE_MAXSIZE=4294967296
export TF_FORCE_GPU_ALLOW_GROWTH=true PYTHONUNBUFFERED=1
ENV
cat /root/env.sh
