"""One seed policy: how a user's ``seed`` becomes the seed of a simulator (Aer, Runtime's local
testing mode), for the targets and the cut-circuit samplers alike."""

from __future__ import annotations

#: the simulator seed used for ``seed=0``: Runtime's local testing mode drops a falsy
#: ``seed_simulator`` (it treats 0 as "no seed"), so 0 would silently run unseeded
SEED_FOR_ZERO = 2**31 - 1


def simulator_seed(seed: int | None) -> int | None:
    """The simulator seed of a user seed: ``seed`` itself, except 0 -> :data:`SEED_FOR_ZERO`;
    None stays None (unseeded)."""
    if seed is None:
        return None
    seed = int(seed)
    return SEED_FOR_ZERO if seed == 0 else seed
