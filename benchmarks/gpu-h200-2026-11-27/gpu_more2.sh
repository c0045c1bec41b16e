#!/bin/bash
# Second device call: mixed precision on/off per family (one process each), then the
# NumPy reference check of a float32 LSTM run with TF32 off.
set -uo pipefail
ROOT=$PWD  # the repository root, where device commands start
source benchmarks/gpu-h200-2026-11-27/env_part.sh
W=/root/bw2; mkdir -p $W
for fam in cnn rnn; do
cat > $W/$fam.json <<J
{"name": "more_$fam", "recipe": "$ROOT/configs/bbc_$fam.yaml", "overrides": ["train.verbose=epoch"], "epochs": 3, "workdir": "$W",
 "variants": [{"name": "float32 (no mixed precision)", "overrides": ["train.mixed_precision=none"]}, {"name": "shipped", "overrides": []}]}
J
timeout 110 python3 scripts/bench_textclf.py ablation --spec $W/$fam.json --out $OUT/ablation_$fam.json > $OUT/ablation_$fam.log 2>&1; echo "$fam rc $?"
done
python3 -c "import json;[print(v['name'], v.get('examples_per_s') or v.get('error'), v.get('epoch_train_seconds')) for f in ('cnn','rnn') for v in json.load(open('$OUT/ablation_'+f+'.json'))['variants']]"
