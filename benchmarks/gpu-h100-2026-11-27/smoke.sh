#!/bin/bash
# GPU smoke test: TensorFlow sees the card; cuDNN runs Keras' LSTM; an empty
# row fails in stock Keras and not in textclf's layer; a short LSTM run trains
# on the GPU, matches the NumPy reference (outputs and gradients) and predicts
# empty lines.
source /root/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
TF_CPP_MIN_LOG_LEVEL=1 timeout 240 python3 - <<'PY' 2>&1 | grep -vE "^I0000|oneDNN|^WARNING: All log" | tail -30
import time; t = time.time()
import tensorflow as tf, numpy as np, keras
print("SMOKE import", round(time.time() - t, 1), "s", tf.__version__, keras.__version__)
gpus = tf.config.list_physical_devices("GPU"); print("SMOKE GPUs", gpus)
for g in gpus: print("SMOKE", tf.config.experimental.get_device_details(g))
tf.config.experimental.enable_tensor_float_32_execution(False)
a = tf.random.normal((1024, 1024)); b = tf.random.normal((1024, 1024)); c = a @ b
ref = a.numpy().astype(np.float64) @ b.numpy().astype(np.float64)
print("SMOKE fp32 matmul rel err", np.linalg.norm(c.numpy() - ref) / np.linalg.norm(ref), c.device)
from textclf.models.fused_lstm import FusedLSTM
x = np.random.default_rng(0).normal(size=(4, 7, 8)).astype("float32")
mask = np.array([[1]*7, [1]*5 + [0]*2, [0]*7, [1]*3 + [0]*4], bool)  # row 2: empty
for cls in (keras.layers.LSTM, FusedLSTM):
    layer = cls(16, return_sequences=True)
    fn = tf.function(lambda x, m: layer(x, mask=m))
    ops = sorted({o.type for o in fn.get_concrete_function(tf.TensorSpec((None, None, 8)), tf.TensorSpec((None, None), tf.bool)).graph.get_operations() if "Cudnn" in o.type or "While" in o.type})
    try:
        y = fn(x, mask).numpy(); print("SMOKE", cls.__name__, ops, "empty row ok, its outputs max", abs(y[2]).max())
    except Exception as e:
        print("SMOKE", cls.__name__, ops, "empty row FAILS:", type(e).__name__, str(e).splitlines()[0][:150])
PY
R=/root/smoke_runs; rm -rf $R; mkdir -p $R
T0=$(date +%s); python3 -m textclf.cli train -c configs/bbc_rnn.yaml --set train.epochs=2 --set train.mixed_precision=none -o $R/rnn32 2>&1 | tail -3; echo "SMOKE train $(( $(date +%s) - T0 )) s"
python3 -m textclf.cli check $R/rnn32 --gradients --n 64 2>&1 | tail -22
printf 'shares fell sharply on the stock market\n\nthe striker scored twice in the final\n' > $R/in.txt
python3 -m textclf.cli predict $R/rnn32 $R/in.txt 2>&1 | cut -c1-150 | tail -4
printf '\n' | python3 -m textclf.cli predict $R/rnn32 - 2>&1 | cut -c1-150 | tail -2
