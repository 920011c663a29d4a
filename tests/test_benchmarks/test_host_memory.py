"""The allocator setting of the harness (``benchmarks.host_memory``): with it, a large block
freed by one step is reused by the next without page faults; without it (glibc's defaults,
the negative control) every such block faults in again; ``release_freed_memory`` returns the
free pages. Each case runs in a fresh interpreter: the setting is process-wide."""

import json
import subprocess
import sys

import pytest

from benchmarks.host_memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="the setting applies to glibc only")

# Allocate, touch and free a 64 MiB block (the size of NG-T's attention tensors at batch 128)
# again and again. glibc's aligned allocations leave small pieces in its per-thread cache
# that keep the first freed blocks from merging, so the heap holds a few spare blocks before
# it settles: report the page faults and the growth of resident memory once it has (blocks
# 11 to 15), and what a release gives back.
PROBE = """
import json, resource, sys
import torch
from benchmarks.host_memory import keep_freed_memory, release_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def blocks(n):
    for _ in range(n):
        torch.empty(16 * 2**20).fill_(1.0)
blocks(10)
faults, held = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, resident_mib()
blocks(5)
faults, grown = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, resident_mib() - held
held = resident_mib()
release_freed_memory()
print(json.dumps({"applied": applied, "faults": faults, "grown": grown, "released": held - resident_mib()}))
"""


def probe(setting: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, setting], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_kept_blocks_are_reused_without_page_faults():
    kept, default = probe("keep"), probe("default")
    assert kept["applied"] and not default["applied"]
    pages = 64 * 2**20 // 4096
    assert kept["faults"] < pages // 10 and kept["grown"] < 8  # reused: a few pages of bookkeeping
    assert default["faults"] >= 5 * pages * 0.9  # glibc maps and faults in each block anew


def test_release_returns_the_kept_pages():
    kept = probe("keep")
    assert kept["released"] >= 60  # the freed 64 MiB block goes back to the system
