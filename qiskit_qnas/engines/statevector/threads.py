"""The torch thread policy of the simulators: one intra-op thread for small simulations.

Torch's intra-op thread pool pays off only for large states: below :data:`SINGLE_THREAD_BELOW`
amplitudes per call its OpenMP workers cost more than they save.
"""

from __future__ import annotations

import contextlib

import torch

#: below this many amplitudes per call, torch's intra-op threads only cost: OpenMP workers that
#: wait for a busy core made a 2 ms Jacobian take up to 1 s on a loaded 2-core machine
SINGLE_THREAD_BELOW = 2**18


@contextlib.contextmanager
def torch_threads_for(amplitudes: int):
    """Run small simulations on one torch thread (restored afterwards); large ones as configured."""
    before = torch.get_num_threads()
    if amplitudes >= SINGLE_THREAD_BELOW or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["SINGLE_THREAD_BELOW", "torch_threads_for"]
