"""Backends: what kind a backend is, its short name and width, and backends by name.

The kinds :func:`qiskit_qnas.targets.resolve_target` tells apart (:func:`is_aer_simulator`,
:func:`is_fake_backend`, :func:`is_ibm_backend`); the fake backends of
``qiskit_ibm_runtime.fake_provider`` by short name (:func:`fake_backend`); and the target
specifications of the command line's ``--target`` (:data:`TARGET_SYNTAX`): :func:`target_spec`
checks and normalises one, :func:`target_backend` turns it into the ``backend`` and
``target_mode`` of :class:`~qiskit_qnas.estimator.QNASEstimator`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .validation import InvalidArgument

#: the target specifications :func:`target_spec` accepts
TARGET_SYNTAX = "statevector, aer, aer:<fake backend>, runtime:<fake backend>, ibm:<backend name>"


def backend_qubits(backend) -> int | None:
    """The number of qubits of ``backend`` (None: it states none)."""
    n = getattr(backend, "num_qubits", None)
    if n is None:
        target = getattr(backend, "target", None)
        n = getattr(target, "num_qubits", None)
    return None if n is None else int(n)


def backend_name(backend) -> str:
    """The backend's name, that of the device for ``AerSimulator.from_backend(device)``."""
    name = str(getattr(backend, "name", None) or type(backend).__name__)
    match = re.fullmatch(r"aer_simulator_from\((.+)\)", name)
    return match.group(1) if match else name


def is_fake_backend(backend) -> bool:
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    return isinstance(backend, FakeBackendV2)


def is_aer_simulator(backend) -> bool:
    from qiskit_aer import AerSimulator

    return isinstance(backend, AerSimulator)


def is_ibm_backend(backend) -> bool:
    from qiskit_ibm_runtime import IBMBackend

    return isinstance(backend, IBMBackend)


def _fake_key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = key.removeprefix("fake_").removeprefix("fake")
    key = re.sub(r"_?v2$", "", key)
    return key.replace("_", "")


@functools.lru_cache(maxsize=1)
def fake_backend_classes() -> dict[str, type]:
    """The fake backends of ``qiskit_ibm_runtime.fake_provider`` by short name (``manila``...)."""
    from qiskit.providers import BackendV2
    from qiskit_ibm_runtime import fake_provider

    found: dict[str, type] = {}
    for name in dir(fake_provider):
        cls = getattr(fake_provider, name)
        if name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, BackendV2):
            found.setdefault(_fake_key(name), cls)
    return dict(sorted(found.items()))


def fake_backend(name: str):
    """An instance of the fake backend called ``name`` (``fake_manila``, ``FakeManilaV2`` or ``manila``)."""
    classes = fake_backend_classes()
    cls = classes.get(_fake_key(name))
    if cls is None:
        raise ValueError(f"invalid value {name!r}; allowed: a fake backend of qiskit_ibm_runtime.fake_provider "
                         f"({', '.join(classes)})")
    return cls()


#: the largest error rate a scaled backend reports (a gate or readout at 1/2 carries no information)
MAX_SCALED_ERROR = 0.5


def scaled_noise_backend(backend, factor: float):
    """A copy of ``backend`` whose noise is ``factor`` times its own, for noise studies: every gate and
    readout error rate multiplied by ``factor`` (capped at :data:`MAX_SCALED_ERROR`), every T1 and T2
    divided by it; durations, basis and coupling unchanged, ``backend`` itself untouched.

    Use it wherever a backend goes, e.g. ``QNASEstimator(backend=scaled_noise_backend(FakeYorktownV2(), 4),
    target_mode="aer")``: its emulation (``AerSimulator.from_backend``, ``NoiseModel.from_backend``) builds
    the noise from the scaled properties. ``factor=1`` reproduces the backend's noise; ``factor < 1`` is a
    better device.
    """
    import copy

    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
        raise InvalidArgument("factor", factor, "a positive finite number")
    target = getattr(backend, "target", None)
    if target is None or not getattr(target, "qubit_properties", None):
        raise InvalidArgument("backend", backend_name(backend), "a BackendV2 that reports its qubits' properties "
                                                                "and error rates (e.g. a fake IBM backend)")
    scaled = copy.deepcopy(backend)
    target = scaled.target
    for name in target.operation_names:
        for properties in target[name].values():
            if properties is not None and properties.error is not None:
                properties.error = min(properties.error * factor, MAX_SCALED_ERROR)
    from qiskit.transpiler import QubitProperties

    def shorter(time: float | None) -> float | None:
        return None if time is None else time / factor

    # the target hands out copies of its qubits' properties: the list is replaced, not edited
    target.qubit_properties = [QubitProperties(t1=shorter(q.t1), t2=shorter(q.t2), frequency=q.frequency)
                               for q in target.qubit_properties]
    scaled.name = f"{backend_name(backend)}_noise_x{factor:g}"
    return scaled


def target_spec(text: str) -> str:
    """``text`` checked against :data:`TARGET_SYNTAX` and normalised (``"runtime:FakeManilaV2"`` ->
    ``"runtime:manila"``); backends are not built. A bad one raises
    :class:`~qiskit_qnas.validation.InvalidArgument` for ``target``."""
    kind, _, name = text.partition(":")
    kind = kind.strip().lower()
    name = name.strip()
    if kind in ("statevector", "exact", "none") and not name:
        return "statevector"
    if kind == "aer" and not name:
        return "aer"
    if kind in ("aer", "runtime") and name:
        if _fake_key(name) not in fake_backend_classes():
            raise InvalidArgument("target", text,
                                  f"{TARGET_SYNTAX}; fake backends: {', '.join(fake_backend_classes())}")
        return f"{kind}:{_fake_key(name)}"
    if kind == "ibm" and name:
        return f"ibm:{name}"
    raise InvalidArgument("target", text, TARGET_SYNTAX)


def target_backend(spec: str) -> tuple[Any, str]:
    """``(backend, target_mode)`` for ``QNASEstimator`` from a normalised target specification
    (:func:`target_spec`); ``ibm:<name>`` reaches IBM Quantum with the saved account."""
    kind, _, name = spec.partition(":")
    if kind == "statevector":
        return None, "auto"
    if kind == "aer" and not name:
        from qiskit_aer import AerSimulator

        return AerSimulator(), "aer"
    if kind in ("aer", "runtime"):
        return fake_backend(name), kind
    if kind == "ibm":
        from qiskit_ibm_runtime import QiskitRuntimeService

        # a saved account (QiskitRuntimeService.save_account) or the QISKIT_IBM_* environment
        return QiskitRuntimeService().backend(name), "runtime"
    raise ValueError(f"invalid value {spec!r}; allowed: {TARGET_SYNTAX}")


__all__ = ["MAX_SCALED_ERROR", "TARGET_SYNTAX", "backend_name", "backend_qubits", "fake_backend",
           "fake_backend_classes", "is_aer_simulator", "is_fake_backend", "is_ibm_backend", "scaled_noise_backend",
           "target_backend", "target_spec"]
