"""``vaebench.machine``'s reading of /proc/cpuinfo, on a file written here."""

from __future__ import annotations

from vaebench.machine import _cpuinfo

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu avx avx2 fma avx512f
processor\t: 1
vendor_id\t: GenuineIntel
model name\t: another core
"""


def test_the_first_line_of_a_key_gives_its_value(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert _cpuinfo("vendor_id", path) == "AuthenticAMD"  # the first core's, not the last
    assert _cpuinfo("model name", path) == "AMD EPYC 9R14"
    assert _cpuinfo("flags", path) == "fpu avx avx2 fma avx512f"
    assert _cpuinfo("cpu MHz", path) is None
    assert _cpuinfo("vendor_id", tmp_path / "missing") is None
