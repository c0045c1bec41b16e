"""How training batches are shaped and compiled for the device at hand.

``train.pad_to_multiple_of`` and ``train.jit_compile`` default to ``auto``,
resolved here when a run starts (written to ``run.json``; logged on a GPU or
when set):

- **Batch widths.** Bucketed batches are padded to their own longest document,
  so nearly every batch has a new width. On a CPU that is free: the cost grows
  with the width and nothing is tuned per shape. On a GPU every new input
  shape makes TensorFlow time cuDNN's convolution algorithms again (and an
  XLA-compiled step compile again), so ``auto`` rounds widths up to a multiple
  of :data:`GPU_PAD_MULTIPLE` there: at most ``max_length / 64`` shapes, at
  the price of up to 63 padding tokens per batch (masked, so no answer changes).
- **XLA.** Keras' own ``jit_compile="auto"`` compiles the training step with
  XLA whenever a GPU is visible. XLA compiles one program per input shape, so
  with bucketing ``auto`` here turns it off; with fixed-length batches it
  leaves the choice to Keras.

This module imports TensorFlow only to look for a GPU, and only when asked.
"""

from __future__ import annotations

GPU_PAD_MULTIPLE = 64

_LOOK_UP = object()


def gpu_visible() -> bool:
    from .precision import gpu_compute_capability

    return gpu_compute_capability() is not None


def resolve_pad_multiple(setting, gpu: bool | object = _LOOK_UP) -> tuple[int, str]:
    """``train.pad_to_multiple_of`` -> (multiple, why); ``gpu`` is looked up when
    not given (the tests give it)."""
    if setting != "auto":
        return int(setting), "as configured"
    if gpu is _LOOK_UP:
        gpu = gpu_visible()
    if gpu:
        return GPU_PAD_MULTIPLE, "a GPU: each new batch width costs a cuDNN algorithm search"
    return 1, "no GPU: padding costs time and new widths cost nothing"


def resolve_jit_compile(setting, bucketing: bool) -> tuple[bool | str, str]:
    """``train.jit_compile`` -> (Keras' ``jit_compile`` argument, why)."""
    if setting != "auto":
        return bool(setting), "as configured"
    if bucketing:
        return False, "bucketed batches vary in width and XLA compiles once per shape"
    return "auto", "Keras' choice (XLA where a GPU is visible)"
