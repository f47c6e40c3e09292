"""The adjoint method's backward sweep through compiled gates.

Per-sample Jacobians of all observables (what ``TorchConnector`` asks a ``NeuralNetwork`` for) come
from one backward sweep that un-computes the state gate by gate (gates are unitary) while it carries
the K cotangent states O_k psi, so nothing is stored per gate. With f_k = <psi|O_k|psi>,
df_k/dh = 2 Re <O_k psi| dU/dh psi_before> for each gate half-angle h. Training needs only the
vector-Jacobian product with the incoming gradient g, whose sweep carries the one cotangent state
(sum_k g_k O_k) psi. The chain rule from half-angles to inputs and weights belongs to the program
that compiled the gates (:meth:`~qiskit_qnas.engines.StatevectorProgram.jacobians`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .gates import _Angles, _Gate

Tensor = torch.Tensor


def _sweep_back(gates: Sequence[_Gate], psi: Tensor, cotangent_diagonals: Tensor, angles: _Angles,
                n_columns: int, keep_initial: bool) -> tuple[Tensor, Tensor]:
    """Sweep the final states ``psi`` (2**n, B) and their cotangent states D_m psi, with diagonal D_m
    given as ``cotangent_diagonals`` (2**n, M, 1) or (2**n, M, B), back through ``gates`` (in circuit
    order), the last gate first.

    Returns the overlaps (n_columns, 1 + M, B), row h = Re <state_m| dU/dh psi_before> for every
    gate half-angle column h (m = 0 is psi itself), and the states side by side (2**n, 1 + M, B)
    as they were before the first gate; without ``keep_initial`` the first gate is not undone, as
    the caller has no use for the states before it.
    """
    batch, k_out = psi.shape[1], cotangent_diagonals.shape[1]
    # the states and their cotangents O_k psi side by side: (2**n, 1 + K, B)
    both = torch.cat([psi.unsqueeze(1), psi.unsqueeze(1) * cotangent_diagonals.to(psi.dtype)], 1)
    # every gate angle has its own column: row h = Re <state_m| dU/dh psi_before> (m = 0 is psi)
    overlaps = torch.zeros(n_columns, 1 + k_out, batch, dtype=torch.float64)
    backwards = list(gates)[::-1]
    for i, gate in enumerate(backwards):
        for column, v in gate.derivatives(both[:, 0], angles):
            _overlaps(both, v, out=overlaps[column])
        if i + 1 < len(backwards) or keep_initial:
            both = gate.inverse(both, angles)
    return overlaps, both


def _overlaps(states: Tensor, v: Tensor, out: Tensor) -> Tensor:
    """Re <states_m|v> per sample into ``out``: (2**n, M, B) x (2**n, B) -> (M, B)."""
    if states.is_complex() or v.is_complex():
        states = torch.view_as_real(states if states.is_complex() else states.to(torch.complex128))
        v = torch.view_as_real(v if v.is_complex() else v.to(torch.complex128))
        return torch.sum(states * v.unsqueeze(1), (0, -1), out=out)
    return torch.sum(states * v.unsqueeze(1), 0, out=out)
