"""One transpile path: logical circuits to the ISA circuits of a backend, through Qiskit's preset
pass manager. The targets' ISA cache (hence the runtime proxy), the cut circuits' sub-experiments,
exported circuits and the estimator's ``best_circuit(isa=True)`` all transpile here."""

from __future__ import annotations

from qiskit.transpiler import PassManager, generate_preset_pass_manager

#: ``seed_transpiler`` of every ISA circuit unless told otherwise: the same logical circuit gives
#: the same ISA circuit (so the runtime proxy is deterministic)
SEED_TRANSPILER = 0


def isa_pass_manager(backend, optimization_level: int, seed_transpiler: int | None = SEED_TRANSPILER) -> PassManager:
    """The preset pass manager that maps circuits onto ``backend``'s layout and basis gates."""
    return generate_preset_pass_manager(backend=backend, optimization_level=int(optimization_level),
                                        seed_transpiler=seed_transpiler)


def to_isa(circuit, backend, optimization_level: int, seed_transpiler: int | None = SEED_TRANSPILER):
    """``circuit`` (or a list of circuits) transpiled to ISA circuits of ``backend``."""
    return isa_pass_manager(backend, optimization_level, seed_transpiler).run(circuit)
