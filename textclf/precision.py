"""``train.mixed_precision: auto``: the Keras dtype policy the hardware runs fastest.

- a GPU of compute capability 8.0 or newer (Ampere, Hopper): ``none``. Its
  tensor cores already run float32 matmuls and convolutions as TF32
  (TensorFlow's default), and for textclf's model sizes the casts of
  ``mixed_float16`` cost more than they save: on an H200 its BBC recipes
  trained 1.8x (TextCNN) and 1.5x (LSTM) faster in float32
  (benchmarks/gpu-h200-2026-11-27);
- a GPU of compute capability 7.x (Volta, Turing: tensor cores, no TF32):
  ``mixed_float16`` (not measured here);
- a CPU with bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in
  /proc/cpuinfo): ``mixed_bfloat16``: bfloat16 matmuls and convolutions run at
  about twice the float32 rate there (BENCHMARKS.md measures both);
- anything else: ``none``: without those instructions bfloat16 is emulated and
  slower than float32.

Weights stay float32 and the softmax head computes in float32 in every case
(textclf.models.common.softmax_head); recurrent states stay float32 on the CPU
(textclf.models.fused_lstm). The choice is logged and written to run.json, so
a run records what it trained with.
"""

from __future__ import annotations

from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def gpu_compute_capability() -> tuple[int, int] | None:
    """(major, minor) of TensorFlow's first GPU, or None without one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability", (0, 0)))


_LOOK_UP = object()


def resolve_mixed_precision(setting: str, gpu_capability=_LOOK_UP,
                            flags: set[str] | None = None) -> tuple[str, str]:
    """``train.mixed_precision`` -> (Keras policy name or "none", why).

    ``gpu_capability`` ((major, minor), or None for no GPU) and the CPU
    ``flags`` are looked up when not given (the tests give them).
    """
    if setting != "auto":
        return setting, "as configured"
    if gpu_capability is _LOOK_UP:
        gpu_capability = gpu_compute_capability()
    if gpu_capability is not None:
        major, minor = gpu_capability
        if major >= 8:
            return "none", (f"GPU compute capability {major}.{minor}: float32 runs on "
                            f"tensor cores as TF32")
        if major == 7:
            return "mixed_float16", f"GPU compute capability {major}.{minor}"
        return "none", f"GPU compute capability {major}.{minor} < 7.0"
    found = sorted((cpu_flags() if flags is None else flags) & set(BF16_CPU_FLAGS))
    if found:
        return "mixed_bfloat16", f"CPU has {', '.join(found)}"
    return "none", "no GPU and no bfloat16 CPU instructions"
