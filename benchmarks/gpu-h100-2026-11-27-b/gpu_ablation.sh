#!/bin/bash
# Second call on the same warm machine, after gpu_run.sh had unpacked TensorFlow:
# the rest of the BBC ablation (every lever the first call did not time, except
# "XLA on" with widths rounded to 64, which the H200 run timed). From the
# repository root: bash benchmarks/gpu-h100-2026-11-27-b/gpu_ablation.sh
set -uo pipefail
ROOT=$PWD
source benchmarks/gpu-h200-2026-11-27/env_part.sh
python3 scripts/bench.py --gpu --datasets bbc --skip rows,extras,peers,process,memory,reference,lstm \
  --ablation-epochs 2 \
  --ablation-match "rounded to 256|not rounded|autotuning|bucketing|Conv1D|batch|float16|bfloat16|float32" \
  --stop-after 6.3 --workdir /root/bw2 --json $OUT/bench_gpu_ablation.json \
  --out $OUT/BENCHMARKS_gpu_ablation.md 2>&1 | tee $OUT/bench_ablation_stdout.txt | grep -E '^\[bench'
(cd /root/bw2 && tar czf $OUT/logs_ablation.tgz logs 2>/dev/null)
