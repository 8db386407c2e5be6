"""The CPU a benchmark ran on: model name and the instruction sets INT8 kernels depend on."""

from __future__ import annotations

import platform
from pathlib import Path

# /proc/cpuinfo flag -> what benchmark tables call it
FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
}


def cpu_description() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    present = [name for flag, name in FLAGS.items() if flag in flags]
    absent = [name for flag, name in FLAGS.items() if flag not in flags]
    return f"{model}; has {', '.join(present) or 'none of them'}; lacks {', '.join(absent) or 'none'}"
