# Environment for TensorFlow 2.21 (CUDA 12.5 build) unpacked in /tmp/site312 on the lent
# machine: its CUDA 12 sonames -> the image's CUDA 13 libraries. Sourced; needs ROOT.
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
