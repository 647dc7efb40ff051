"""Where torch runs: the intra-op thread count for CPU work.

The models and the post-hoc classifiers are small, so their CPU time goes to per-op overhead, not arithmetic:
more threads add synchronisation, and on cores shared with other work torch's default (one thread per core)
waits on whichever thread the OS has parked. Measured on a 2-core machine: one thread trained dcgan 3-4x
faster than two, ran a small evaluation 20x faster, and sampled scenarios 2-35x faster. Commands therefore
run their torch work through ``torch_threads`` (1 by default; ``--threads`` changes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int | None = 1) -> Iterator[None]:
    """Run with ``threads`` torch intra-op threads (None or 0: leave torch's setting), restoring it after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
