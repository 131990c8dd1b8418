"""What machine a number was measured on: CPU model, instruction set, threads, libraries, commit.

Every stage records ``machine_info()`` beside its results (MLflow tags, ``train.json``,
``reports/``): bitwise reproducibility holds on one machine only, because the GEMM libraries
choose different kernels on different CPUs (AMD EPYC's AVX2 path, Intel's AVX-512 one).
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path

# The SIMD extensions that decide which GEMM kernels MKL and oneDNN pick.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_tile")


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(key: str, path: Path = CPUINFO) -> str | None:
    """The value of the first ``key`` line of /proc/cpuinfo; None where there is none."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@cache
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's description)."""
    return (_cpuinfo("model name") or platform.processor() or platform.machine()
            or "unknown")


@cache
def cpu_vendor() -> str:
    """The x86 vendor string from /proc/cpuinfo ('GenuineIntel', 'AuthenticAMD'); '' when
    there is none (another architecture, another OS)."""
    return _cpuinfo("vendor_id") or ""


@cache
def cpu_isa() -> str:
    """The GEMM-relevant SIMD flags of this CPU, space-separated (e.g. ``avx avx2 fma``)."""
    flags = _cpuinfo("flags")
    if flags is None:
        return "unknown"
    present = set(flags.split())
    return " ".join(f for f in ISA_FLAGS if f in present)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(root: Path, gemm: str | None = None) -> dict[str, str]:
    """CPU model, SIMD flags, torch threads, torch version, GEMM library and git commit."""
    import torch

    info = {"cpu": cpu_model(), "cpu_isa": cpu_isa(), "cpu_count": str(os.cpu_count()),
            "torch_threads": str(torch.get_num_threads()), "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": git_commit(root)}
    if gemm is not None:
        info["gemm"] = gemm
    return info
