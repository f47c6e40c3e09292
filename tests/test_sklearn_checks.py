"""QNASEstimator against scikit-learn's own estimator checks (``parametrize_with_checks``)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from qiskit_qnas import QNASEstimator, SearchSpace

#: the smallest search there is: one or two qubits, one layer, one gene choice each, one generation
TINY = dict(search_space=SearchSpace(qubits=(1, 2), layers=(1, 1), embeddings=("angle_y",), rotations=("ry",),
                                     entanglers=("none",)),
            population_size=2, n_generations=1, supercircuit_epochs=1, finetune_epochs=0, final_epochs=10,
            verbose=0, random_state=0)

#: checks the estimator cannot pass, each with the reason
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks([QNASEstimator(**TINY)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_check(estimator, check):
    check(estimator)
