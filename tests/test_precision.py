"""train.mixed_precision: auto picks the policy the hardware accelerates."""

from __future__ import annotations

import pytest

from textclf.precision import cpu_flags, resolve_mixed_precision


@pytest.mark.parametrize("gpu, flags, expected", [
    ((7, 0), set(), "mixed_float16"),  # tensor cores without TF32
    ((7, 5), {"avx512_bf16"}, "mixed_float16"),  # the GPU trains, not the CPU
    ((8, 0), set(), "none"),  # TF32 tensor cores run float32 already
    ((9, 0), {"avx512_bf16"}, "none"),  # measured slower in float16 on an H200
    ((6, 1), {"avx512_bf16"}, "none"),  # a pre-tensor-core GPU
    (None, {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    (None, {"amx_bf16", "amx_tile"}, "mixed_bfloat16"),
    (None, {"avx2", "avx512f"}, "none"),  # bfloat16 would be emulated: slower
])
def test_auto(gpu, flags, expected):
    policy, why = resolve_mixed_precision("auto", gpu_capability=gpu, flags=flags)
    assert policy == expected and why


@pytest.mark.parametrize("setting", ["none", "mixed_float16", "mixed_bfloat16"])
def test_explicit_settings_are_kept(setting):
    assert resolve_mixed_precision(setting, gpu_capability=(9, 0), flags=set())[0] == setting


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16\nbugs\t\t: x\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
