#!/bin/bash
# Float32 against mixed_float16, per BBC recipe, both in one process in the order
# given; with "check", then the NumPy reference check of a float32 LSTM run with
# TF32 off. From the repository root, after gpu_run.sh unpacked TensorFlow:
#   bash benchmarks/gpu-h200-2026-11-27/gpu_precision.sh float16-first|float32-first EPOCHS [check]
# As run on the H200: "float16-first 2 check", then "float32-first 3". Those runs
# named the float16 variant "shipped" (the recipes' auto meant mixed_float16 then).
set -uo pipefail
ORDER=${1:-float32-first}; EPOCHS=${2:-3}; CHECK=${3:-}
ROOT=$PWD
source "$(dirname "$0")/env_part.sh"
F16='{"name": "mixed_float16", "overrides": ["train.mixed_precision=mixed_float16"]}'
F32='{"name": "float32 (no mixed precision)", "overrides": ["train.mixed_precision=none"]}'
if [ "$ORDER" = float16-first ]; then VARIANTS="$F16, $F32"; else VARIANTS="$F32, $F16"; fi
W=/root/bw2; mkdir -p $W
for fam in cnn rnn; do
  cat > $W/$fam.json <<J
{"name": "precision_$fam", "recipe": "$ROOT/configs/bbc_$fam.yaml", "overrides": ["train.verbose=epoch"],
 "epochs": $EPOCHS, "workdir": "$W", "variants": [$VARIANTS]}
J
  timeout 110 python3 scripts/bench_textclf.py ablation --spec $W/$fam.json \
    --out $OUT/precision_${fam}_$ORDER.json > $OUT/precision_${fam}_$ORDER.log 2>&1
  echo "$fam rc $?"
done
python3 -c "import json;[print(v['name'], v.get('error') or v.get('epoch_train_seconds')) for f in ('cnn','rnn') for v in json.load(open('$OUT/precision_'+f+'_$ORDER.json'))['variants']]"
[ "$CHECK" = check ] || exit 0
export NVIDIA_TF32_OVERRIDE=0
timeout 60 python3 -m textclf.cli train -c configs/bbc_rnn.yaml --set train.epochs=1 \
  --set train.mixed_precision=none -o $W/rnn32 > $OUT/train_rnn_float32.txt 2>&1
timeout 50 python3 -m textclf.cli check $W/rnn32 --gradients --n 64 > $OUT/check_rnn_float32.txt 2>&1
tail -22 $OUT/check_rnn_float32.txt
