"""Runtime error suppression and mitigation: the settings a Runtime target accepts, and what they run.

:func:`check_runtime_options` validates ``runtime_options`` (``resilience_level``, twirling,
dynamical decoupling, TREX measurement mitigation, ZNE) before any work starts;
:func:`build_estimator_options` turns them into the ``EstimatorOptions`` of the executor-based
``qiskit_ibm_runtime`` Estimator; :func:`resolve_mitigation_plan` resolves those options by
``qiskit_ibm_runtime``'s own rules into the :class:`MitigationPlan` of executions that the runtime
proxy counts (:mod:`qiskit_qnas.runtime_proxy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .validation import InvalidArgument, is_integer

#: Runtime error suppression / mitigation settings accepted in ``runtime_options`` (nested dicts
#: mirror ``qiskit_ibm_runtime.options_models.EstimatorOptions``)
TWIRLING_KEYS = ("enable_gates", "enable_measure", "num_randomizations", "shots_per_randomization")
DD_KEYS = ("enable", "sequence_type")
DD_SEQUENCES = ("XX", "XpXm", "XY4")
RUNTIME_OPTION_KEYS = ("resilience_level", "twirling", "dynamical_decoupling", "measure_mitigation",
                       "zne_mitigation", "rep_delay")


def _count_or_auto(name: str, value) -> int | str:
    if value == "auto":
        return "auto"
    if not is_integer(value) or value < 1:
        raise ValueError(f"invalid runtime_options {name}={value!r}; allowed: 'auto' or an integer >= 1")
    return int(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"invalid runtime_options {name}={value!r}; allowed: True or False")
    return bool(value)


def _sub_options(name: str, value, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"invalid runtime_options {name}={value!r}; allowed: a dict with keys {', '.join(keys)}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ValueError(f"invalid runtime_options {name} key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(keys)}")
    return value


def check_runtime_options(options: dict[str, Any] | None) -> dict:
    """Validate Runtime error suppression and mitigation settings; returns a normalised copy.

    Keys (all optional): ``resilience_level`` (0, 1, 2); ``twirling``: a dict of ``enable_gates``,
    ``enable_measure`` (bools), ``num_randomizations``, ``shots_per_randomization`` (``"auto"`` or an
    integer >= 1); ``dynamical_decoupling``: a dict of ``enable`` (bool) and ``sequence_type``
    (``"XX"``, ``"XpXm"``, ``"XY4"``); ``measure_mitigation`` (TREX) and ``zne_mitigation``
    (bools); ``rep_delay``: seconds after every shot (``execution.rep_delay``; the backend's
    ``default_rep_delay`` when left out). Settings left out take the resilience level's defaults,
    as in Runtime.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidArgument("runtime_options", options, f"None or a dict with keys {', '.join(RUNTIME_OPTION_KEYS)}")
    unknown = sorted(set(options) - set(RUNTIME_OPTION_KEYS))
    if unknown:
        raise ValueError(f"invalid runtime_options key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(RUNTIME_OPTION_KEYS)}")
    out: dict = {}
    if "resilience_level" in options:
        level = options["resilience_level"]
        if not is_integer(level) or not 0 <= level <= 2:
            raise ValueError(f"invalid runtime_options resilience_level={level!r}; allowed: 0, 1, 2")
        out["resilience_level"] = int(level)
    if "twirling" in options:
        twirling = _sub_options("twirling", options["twirling"], TWIRLING_KEYS)
        out["twirling"] = {k: (_flag(f"twirling.{k}", v) if k.startswith("enable")
                               else _count_or_auto(f"twirling.{k}", v)) for k, v in twirling.items()}
    if "dynamical_decoupling" in options:
        dd = _sub_options("dynamical_decoupling", options["dynamical_decoupling"], DD_KEYS)
        out["dynamical_decoupling"] = {}
        if "enable" in dd:
            out["dynamical_decoupling"]["enable"] = _flag("dynamical_decoupling.enable", dd["enable"])
        if "sequence_type" in dd:
            if dd["sequence_type"] not in DD_SEQUENCES:
                raise ValueError(f"invalid runtime_options dynamical_decoupling.sequence_type="
                                 f"{dd['sequence_type']!r}; allowed: {', '.join(DD_SEQUENCES)}")
            out["dynamical_decoupling"]["sequence_type"] = dd["sequence_type"]
    for key in ("measure_mitigation", "zne_mitigation"):
        if key in options:
            out[key] = _flag(key, options[key])
    if "rep_delay" in options:
        delay = options["rep_delay"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float, np.integer, np.floating)) or not (
                np.isfinite(delay) and delay >= 0):
            raise ValueError(f"invalid runtime_options rep_delay={delay!r}; allowed: a number of seconds >= 0 "
                             "within the backend's rep_delay_range")
        out["rep_delay"] = float(delay)
    return out


@dataclass(frozen=True)
class MitigationPlan:
    """What Runtime runs per parameter set with the target's options (resolved by
    ``qiskit_ibm_runtime``'s own rules: resilience-level defaults, mitigation forcing twirling,
    twirled shots split into randomizations)."""

    twirled: bool
    num_randomizations: int
    shots_per_randomization: int
    noise_factors: tuple = (1.0,)
    trex_randomizations: int = 0  # randomizations of the one TREX readout-calibration circuit per job
    dynamical_decoupling: bool = False

    @property
    def executions_per_circuit(self) -> int:
        """Shots run per parameter set: noise factors x randomizations x shots per randomization."""
        return len(self.noise_factors) * self.num_randomizations * self.shots_per_randomization

    @property
    def calibration_executions(self) -> int:
        """Shots of the readout-calibration circuit per job (0 without TREX)."""
        return self.trex_randomizations * self.shots_per_randomization


def build_estimator_options(resilience_level: int, shots: int, runtime_options: dict):
    """The ``EstimatorOptions`` of ``shots`` per circuit at ``resilience_level`` with the checked
    ``runtime_options`` (:func:`check_runtime_options`; settings left out keep the level's defaults)."""
    from qiskit_ibm_runtime.options_models import EstimatorOptions

    options = EstimatorOptions(resilience_level=resilience_level, default_shots=int(shots))
    for key, value in runtime_options.get("twirling", {}).items():
        setattr(options.twirling, key, value)
    for key, value in runtime_options.get("dynamical_decoupling", {}).items():
        setattr(options.dynamical_decoupling, key, value)
    for key in ("measure_mitigation", "zne_mitigation"):
        if key in runtime_options:
            setattr(options.resilience, key, runtime_options[key])
    if "rep_delay" in runtime_options:
        options.execution.rep_delay = runtime_options["rep_delay"]
    return options


def resolve_mitigation_plan(options, shots: int) -> MitigationPlan:
    """What the ``EstimatorOptions`` ``options`` make Runtime run for ``shots`` per circuit, by
    ``qiskit_ibm_runtime``'s own rules (``finalize_estimator_options``, ``calculate_twirling_shots``,
    TREX randomizations)."""
    from qiskit_ibm_runtime.executor.calculate_twirling_shots import calculate_twirling_shots
    from qiskit_ibm_runtime.executor_estimator.finalize_options import finalize_estimator_options
    from qiskit_ibm_runtime.executor_estimator.trex import resolve_trex_num_randomizations
    from qiskit_ibm_runtime.executor_estimator.utils import resolve_noise_factors

    options = finalize_estimator_options(options)
    twirling, resilience = options.twirling, options.resilience
    shots = int(shots)
    twirled = bool(twirling.enable_gates or twirling.enable_measure)
    randomizations, per_randomization = (calculate_twirling_shots(shots, twirling.num_randomizations,
                                                                  twirling.shots_per_randomization)
                                         if twirled else (1, shots))
    factors = (tuple(float(f) for f in resolve_noise_factors(resilience.zne)[0])
               if resilience.zne_mitigation else (1.0,))
    trex = (resolve_trex_num_randomizations(resilience.measure_noise_learning, randomizations)
            if resilience.measure_mitigation else 0)
    return MitigationPlan(twirled=twirled, num_randomizations=int(randomizations),
                          shots_per_randomization=int(per_randomization), noise_factors=factors,
                          trex_randomizations=int(trex),
                          dynamical_decoupling=bool(options.dynamical_decoupling.enable))


__all__ = ["DD_KEYS", "DD_SEQUENCES", "RUNTIME_OPTION_KEYS", "TWIRLING_KEYS", "MitigationPlan",
           "build_estimator_options", "check_runtime_options", "resolve_mitigation_plan"]
