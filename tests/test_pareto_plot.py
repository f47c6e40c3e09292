"""``SearchResult.plot_pareto``: axes named, scaled and ticked as their objectives say, the chosen model named."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.ticker import AutoLocator, MaxNLocator  # noqa: E402

from qiskit_qnas.objective import VAL_ERROR, Objective  # noqa: E402
from qiskit_qnas.result import Candidate, SearchResult  # noqa: E402
from qiskit_qnas.space import Architecture  # noqa: E402


def result(third: str) -> SearchResult:
    """Twelve candidates whose subcircuit counts are 1 to 3 and whose sub-experiments span decades."""
    rng = np.random.default_rng(1)
    candidates = []
    for n in (2, 3, 4, 5):
        for layers in (1, 2, 3):
            arch = Architecture(n_qubits=n, n_layers=layers, embedding="angle_y", rotation="ry", entangler="odd")
            error, runtime, subcircuits = float(rng.uniform(0.02, 0.4)), 0.05 * n * layers, 1 + (n > 3) + (n > 4)
            third_value = {"n_subcircuits": subcircuits,
                           "log10_subexperiments": float(np.log10(6.0 ** (n - 2) * layers))}[third]
            candidates.append(Candidate(architecture=arch, val_error=error, runtime_proxy=runtime,
                                        n_subcircuits=subcircuits, objectives=(error, runtime, third_value)))
    found = SearchResult(candidates, ("val_error", "runtime_proxy", third))
    found.chosen = found.candidates.index(found.pareto_front[0])
    return found


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_every_axis_names_its_unit_and_counts_get_integer_ticks(tmp_path):
    found = result("n_subcircuits")
    fig = found.plot_pareto(tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 0
    runtime_vs_subcircuits = fig.axes[2]
    assert runtime_vs_subcircuits.get_xlabel() == "runtime proxy (s)"
    assert "subcircuits" in runtime_vs_subcircuits.get_ylabel() and "(" in runtime_vs_subcircuits.get_ylabel()
    for ax in fig.axes:
        assert ax.get_xlabel().endswith(")") and ax.get_ylabel().endswith(")")  # a unit in brackets
    for ax in fig.axes[1:]:
        assert type(ax.yaxis.get_major_locator()) is MaxNLocator  # integer=True; not the AutoLocator subclass
        fig.canvas.draw()
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert isinstance(fig.axes[0].yaxis.get_major_locator(), AutoLocator)  # seconds are not counts


def test_the_chosen_candidate_is_labelled_by_its_key():
    found = result("n_subcircuits")
    fig = found.plot_pareto()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.texts]
        assert labels == [found.best.architecture.key]


def test_sub_experiments_are_drawn_as_counts_on_a_log_axis():
    found = result("log10_subexperiments")
    fig = found.plot_pareto()
    ax = fig.axes[1]
    assert ax.get_yscale() == "log" and fig.axes[0].get_yscale() == "linear"
    drawn = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    stored = np.array([c.objectives[2] for c in found.candidates])
    np.testing.assert_allclose(np.sort(np.unique(drawn)), np.sort(np.unique(10.0 ** stored)))
    assert drawn.max() / drawn.min() >= 100  # the case the log scale is for


def custom_result(objectives) -> SearchResult:
    """Twelve candidates scored by ``objectives`` (read from the candidates themselves)."""
    candidates = []
    for n in (2, 3, 4, 5):
        for layers in (1, 2, 3):
            arch = Architecture(n_qubits=n, n_layers=layers, embedding="angle_y", rotation="ry", entangler="odd")
            candidate = Candidate(architecture=arch, val_error=0.5 / (n * layers), runtime_proxy=0.05 * n * layers,
                                  n_subcircuits=1 + (n > 3), objectives=())
            candidate.objectives = tuple(o.value_of(candidate) for o in objectives)
            candidates.append(candidate)
    found = SearchResult(candidates, objectives)
    found.chosen = found.candidates.index(found.pareto_front[0])
    return found


ENERGY = Objective("energy", "energy per shot", "nJ", source="runtime_proxy")
WIDTH = Objective("width", "circuit width", "qubits", source="architecture.n_qubits", count=True)
DECADES = Objective("log10_states", "basis states", "states", source="architecture.n_qubits", count=True, log10=True)


def test_the_axes_take_names_units_and_scales_from_the_objectives():
    found = custom_result((VAL_ERROR, ENERGY, WIDTH, DECADES))
    fig = found.plot_pareto()
    assert len(fig.axes) == 6  # every pair of four objectives
    labels = {"val_error": "validation error (fraction misclassified)", "energy": "energy per shot (nJ)",
              "width": "circuit width (qubits)", "log10_states": "basis states (states)"}
    pairs = [(a, b) for k, a in enumerate(found.objective_names) for b in found.objective_names[k + 1:]]
    for ax, (x, y) in zip(fig.axes, pairs):
        assert (ax.get_xlabel(), ax.get_ylabel()) == (labels[x], labels[y])
        assert ax.get_yscale() == ("log" if y == "log10_states" else "linear")
        assert ax.get_xscale() == ("log" if x == "log10_states" else "linear")
        assert (type(ax.yaxis.get_major_locator()) is MaxNLocator) == (y == "width")
    drawn = np.concatenate([c.get_offsets()[:, 1] for c in fig.axes[2].collections])  # val_error vs states
    np.testing.assert_allclose(np.unique(drawn), [10.0 ** n for n in (2, 3, 4, 5)])


def test_two_objectives_make_one_plot_and_one_is_refused():
    fig = custom_result((VAL_ERROR, WIDTH)).plot_pareto()
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == VAL_ERROR.axis_label
    assert fig.axes[0].get_ylabel() == "circuit width (qubits)"
    with pytest.raises(ValueError, match="pairs of objectives; this result has 1: val_error"):
        custom_result((VAL_ERROR,)).plot_pareto()
