"""The search vocabulary: Architecture values and the SearchSpace gene encoding."""

import dataclasses
import json
import math

import numpy as np
import pytest

from qiskit_qnas import EMBEDDINGS, ENTANGLERS, ROTATIONS, Architecture, SearchSpace
from qiskit_qnas.space import MAX_AMPLITUDE_QUBITS, RANGED_ENTANGLERS, ROTATION_GATES


def allowed(values) -> str:
    return ", ".join(values)


# --- Architecture validation: the message names the field and what is allowed --------------------

@pytest.mark.parametrize("field, value, words", [
    ("n_qubits", 0, ["n_qubits", "integer"]),
    ("n_qubits", -3, ["n_qubits", "integer"]),
    ("n_qubits", 2.0, ["n_qubits", "integer"]),
    ("n_qubits", "4", ["n_qubits", "integer"]),
    ("n_qubits", True, ["n_qubits", "integer"]),
    ("n_layers", 0, ["n_layers", "integer"]),
    ("n_layers", None, ["n_layers", "integer"]),
    ("n_layers", 1.5, ["n_layers", "integer"]),
    ("embedding", "angle_w", ["embedding", allowed(EMBEDDINGS)]),
    ("embedding", None, ["embedding", allowed(EMBEDDINGS)]),
    ("rotation", "rz", ["rotation", allowed(ROTATIONS)]),
    ("rotation", ("ry",), ["rotation", allowed(ROTATIONS)]),
    ("entangler", "ring", ["entangler", allowed(ENTANGLERS)]),
    ("entangler", ("odd", "ladder"), ["entangler", allowed(ENTANGLERS)]),
    ("entangler", ("odd",), ["entangler", "one per layer (2)"]),
    ("entangler", ("odd", "even", "all"), ["entangler", "one per layer (2)"]),
    ("entangle_range", 0, ["entangle_range", "from 1 to 3"]),
    ("entangle_range", 4, ["entangle_range", "from 1 to 3"]),
    ("entangle_range", (1, 5), ["entangle_range", "from 1 to 3"]),
    ("entangle_range", 1.0, ["entangle_range", "integer"]),
    ("entangle_range", (1, 2, 3), ["entangle_range", "one per layer (2)"]),
    ("learning_rate", 0.0, ["learning_rate", "positive finite"]),
    ("learning_rate", -0.1, ["learning_rate", "positive finite"]),
    ("learning_rate", math.nan, ["learning_rate", "positive finite"]),
    ("learning_rate", math.inf, ["learning_rate", "positive finite"]),
    ("learning_rate", "0.1", ["learning_rate", "positive finite"]),
    ("learning_rate", True, ["learning_rate", "positive finite"]),
])
def test_architecture_rejects_bad_values(field, value, words):
    args = dict(n_qubits=4, n_layers=2, embedding="angle_y", rotation="ry", entangler="all", entangle_range=1)
    args[field] = value
    with pytest.raises(ValueError) as info:
        Architecture(**args)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


def test_amplitude_width_is_bounded():
    Architecture(MAX_AMPLITUDE_QUBITS, 1, "amplitude")
    with pytest.raises(ValueError, match="n_qubits.*amplitude"):
        Architecture(MAX_AMPLITUDE_QUBITS + 1, 1, "amplitude")
    Architecture(MAX_AMPLITUDE_QUBITS + 1, 1, "angle_y")  # only the amplitude embedding is bounded


def test_one_qubit_architectures_take_range_one():
    assert Architecture(1, 2, entangler="all").entangle_range == (1, 1)
    with pytest.raises(ValueError, match="entangle_range"):
        Architecture(1, 1, entangler="all", entangle_range=2)


def test_numpy_integers_are_accepted_and_normalised():
    arch = Architecture(np.int64(3), np.int32(2), entangler="all", entangle_range=np.int64(2))
    assert arch == Architecture(3, 2, entangler="all", entangle_range=2)
    assert type(arch.n_qubits) is int and all(type(r) is int for r in arch.entangle_range)


# --- Architecture as a value ---------------------------------------------------------------------

def test_per_layer_entanglers_and_ranges():
    arch = Architecture(5, 3, "zz", "rxry", ("odd", "chain", "all"), (2, 3, 4))
    assert arch.entangler == ("odd", "chain", "all")
    assert arch.entangle_range == (2, 1, 4)  # chain has no range
    single = Architecture(5, 3, entangler="even", entangle_range=3)
    assert single.entangler == ("even",) * 3 and single.entangle_range == (3,) * 3
    assert Architecture(4, 2, entangler=["odd", "even"], entangle_range=[2, 3]).entangle_range == (2, 3)


@pytest.mark.parametrize("kind", ["none", "chain", "full"])
def test_range_is_canonical_for_unranged_entanglers(kind):
    arch = Architecture(5, 2, entangler=kind, entangle_range=3)
    assert arch.entangle_range == (1, 1)
    assert arch == Architecture(5, 2, entangler=kind)
    assert hash(arch) == hash(Architecture(5, 2, entangler=kind, entangle_range=(2, 4)))
    assert kind not in RANGED_ENTANGLERS


def test_immutable():
    arch = Architecture(4, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.n_qubits = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.entangler = ("all", "all")
    assert isinstance(arch.entangler, tuple) and isinstance(arch.entangle_range, tuple)


def test_equality_and_hashing():
    a = Architecture(4, 2, "angle_y", "ry", "odd", 1)
    b = Architecture(4, 2, "angle_y", "ry", ("odd", "odd"), (1, 1))
    c = Architecture(4, 2, "angle_y", "ry", ("odd", "even"), 1)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert {a: 1}[b] == 1
    assert a != Architecture(4, 2, "angle_y", "ry", "odd", 1, learning_rate=0.01)
    assert a != "q4-l2-angle_y-ry-odd1.odd1"


def test_ordering_is_total_and_by_size_first():
    archs = [Architecture(4, 1, "zz"), Architecture(2, 3), Architecture(4, 1, "angle_x"),
             Architecture(2, 1, rotation="rxryrz"), Architecture(2, 1), Architecture(4, 2)]
    ordered = sorted(archs)
    assert [(a.n_qubits, a.n_layers) for a in ordered] == [(2, 1), (2, 1), (2, 3), (4, 1), (4, 1), (4, 2)]
    assert ordered[0].rotation == "ry" and ordered[3].embedding == "angle_x"
    for x in archs:
        for y in archs:
            assert (x < y) + (y < x) + (x == y) == 1
            assert (x <= y) == (x < y or x == y)
    with pytest.raises(TypeError):
        _ = archs[0] < "q2-l1"


SAMPLE_SPACE = SearchSpace(qubits=(1, 9), layers=(1, 4), ranges=(1, 5), learning_rates=(1e-3, 1e-1))
SAMPLES = [SAMPLE_SPACE.sample(np.random.default_rng(seed)) for seed in range(60)]
SAMPLES += [Architecture(3, 2), Architecture(6, 3, "amplitude", "rxryrz", ("odd", "full", "all"), (5, 1, 2)),
            Architecture(2, 1, learning_rate=0.1), Architecture(2, 1, learning_rate=1 / 3)]


def test_dict_round_trip():
    for arch in SAMPLES:
        data = arch.to_dict()
        assert set(data) == {f.name for f in dataclasses.fields(Architecture)}
        assert Architecture.from_dict(data) == arch
        assert Architecture.from_dict(json.loads(json.dumps(data))) == arch  # JSON-safe


def test_key_round_trip():
    for arch in SAMPLES:
        key = arch.key
        assert isinstance(key, str) and str(arch) == key and " " not in key
        assert Architecture.from_key(key) == arch
    assert Architecture(4, 2, "angle_y", "ry", ("odd", "even")).key == "q4-l2-angle_y-ry-odd1.even1"
    keys = {a.key for a in SAMPLES}
    assert len(keys) == len(set(SAMPLES))  # distinct architectures, distinct keys


@pytest.mark.parametrize("key", ["", "q4-l2", "q4-l2-angle_y-ry-odd", "q4-l2-angle_y-ry-odd1.", "x4-l2-angle_y-ry-all1",
                                 "q4-l2-angle_w-ry-all1", "q4-l2-angle_y-ry-all1.all1.all1"])
def test_bad_keys(key):
    with pytest.raises(ValueError):
        Architecture.from_key(key)


def test_sizes():
    arch = Architecture(5, 3, "angle_x", "rxryrz")
    assert (arch.n_features, arch.n_inputs, arch.n_weights) == (5, 5, 45)
    amp = Architecture(3, 2, "amplitude", "rxry")
    assert (amp.n_features, amp.n_inputs, amp.n_weights) == (8, 7, 12)


# --- SearchSpace ----------------------------------------------------------------------------------

SPACES = [
    SearchSpace(),
    SearchSpace(qubits=(2, 5), layers=(1, 3), embeddings=("amplitude", "zz"), rotations="rxryrz",
                entanglers=("odd", "chain"), ranges=(2, 4)),
    SearchSpace(qubits=4, layers=2, embeddings=("angle_y",), rotations=("ry",), entanglers=("all",), ranges=1),
    SearchSpace(qubits=(1, 3), layers=(2, 2), ranges=(1, 3), learning_rates=(1e-3, 1e-1)),
]


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_encode_decode_round_trip(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert arch in space
        gene = space.encode(arch)
        assert gene.shape == (space.n_genes,)
        decoded = space.decode(gene)
        if space.learning_rates is None:
            assert decoded == arch
        else:  # the learning rate goes through log10 and back
            assert dataclasses.replace(decoded, learning_rate=arch.learning_rate) == arch
            assert decoded.learning_rate == pytest.approx(arch.learning_rate, rel=1e-12)
        assert np.allclose(space.encode(decoded), gene)


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_encoded_genes_are_within_bounds(space):
    rng = np.random.default_rng(2)
    low, high = space.gene_bounds
    for _ in range(200):
        gene = space.encode(space.sample(rng))
        assert np.all(gene >= low) and np.all(gene <= high), gene


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_any_gene_within_bounds_decodes_to_a_member(space):
    rng = np.random.default_rng(1)
    low, high = space.gene_bounds
    assert low.shape == high.shape == (space.n_genes,) and np.all(low <= high)
    for _ in range(300):
        arch = space.decode(rng.uniform(low - 0.49, high + 0.49))
        assert arch in space
    assert space.decode(low) in space and space.decode(high) in space


def test_integer_gene_mask():
    assert SPACES[0].integer_genes.all()
    mask = SPACES[3].integer_genes
    assert mask[:-1].all() and not mask[-1]
    assert SPACES[0].n_genes == 4 + 2 * 4


def test_genes_of_unused_layers_are_ignored():
    space = SearchSpace(qubits=(3, 3), layers=(1, 3), entanglers=("odd", "even", "all"), ranges=(1, 2))
    gene = np.array([3, 1, 0, 0, 2, 0, 1, 2, 1, 1])
    assert space.decode(gene) == space.decode(np.array([3, 1, 0, 0, 2, 1, 0, 2, 2, 2]))
    assert space.decode(gene) == Architecture(3, 1, space.embeddings[0], space.rotations[0], "all", 2)


def test_ranges_are_clipped_to_the_width():
    space = SearchSpace(qubits=(2, 6), layers=(1, 1), entanglers=("all",), ranges=(3, 5))
    arch = space.decode([2, 1, 0, 0, 0, 5])
    assert arch.entangle_range == (1,) and arch in space
    assert space.decode([4, 1, 0, 0, 0, 5]).entangle_range == (3,)


def test_membership():
    space = SPACES[1]
    assert Architecture(4, 2, "zz", "rxryrz", ("odd", "chain"), (3, 1)) in space
    assert Architecture(2, 2, "zz", "rxryrz", "odd", 1) in space  # range clipped to n_qubits - 1
    assert Architecture(6, 2, "zz", "rxryrz", "odd", 2) not in space  # too wide
    assert Architecture(3, 2, "angle_y", "rxryrz", "odd", 2) not in space  # embedding
    assert Architecture(3, 2, "zz", "ry", "odd", 2) not in space  # rotation
    assert Architecture(3, 2, "zz", "rxryrz", ("odd", "all"), 2) not in space  # entangler
    assert Architecture(5, 2, "zz", "rxryrz", "odd", 1) not in space  # range below the space's
    assert Architecture(3, 2, "zz", "rxryrz", "odd", 2, learning_rate=0.01) not in space
    assert "q3-l2" not in space and None not in space
    lr_space = SPACES[3]
    assert Architecture(2, 2, learning_rate=0.01) in lr_space
    assert Architecture(2, 2) not in lr_space and Architecture(2, 2, learning_rate=0.5) not in lr_space


def test_encode_rejects_non_members_and_decode_bad_genes():
    space = SPACES[1]
    with pytest.raises(ValueError, match="not in"):
        space.encode(Architecture(8, 1))
    with pytest.raises(ValueError, match="gene"):
        space.decode([1, 2, 3])
    with pytest.raises(ValueError, match="gene"):
        space.decode([np.nan] * space.n_genes)


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_mixed_variable_gene_round_trip(space):
    variables = space.variables()
    assert list(variables) == space.variable_names() and len(variables) == space.n_genes
    assert variables["embedding"].options == list(space.embeddings)
    assert variables["rotation"].options == list(space.rotations)
    assert all(variables[f"entangler_{i + 1}"].options == list(space.entanglers) for i in range(space.max_layers))
    assert (variables["n_qubits"].lb, variables["n_qubits"].ub) == space.qubits
    assert all((variables[f"range_{i + 1}"].lb, variables[f"range_{i + 1}"].ub) == space.ranges
               for i in range(space.max_layers))
    assert ("log10_learning_rate" in variables) == (space.learning_rates is not None)
    rng = np.random.default_rng(3)
    for _ in range(200):
        arch = space.sample(rng)
        gene = space.encode_vars(arch)
        assert json.loads(json.dumps(gene)) == gene  # plain values
        decoded = space.decode_vars(gene)
        assert dataclasses.replace(decoded, learning_rate=arch.learning_rate) == arch
        assert space.encode(decoded) == pytest.approx(space.encode(arch))
        assert space.encode_vars(space.decode_vars(space.encode_vars(decoded))) == space.encode_vars(decoded)


def test_mixed_variable_genes_that_an_architecture_ignores_are_canonicalised():
    space = SearchSpace(qubits=(3, 3), layers=(1, 3), entanglers=("odd", "chain", "all"), ranges=(1, 2))
    base = space.encode_vars(Architecture(3, 1, space.embeddings[0], space.rotations[0], "chain", 1))
    variants = [dict(base, entangler_2="odd", range_3=2), dict(base, range_1=2), dict(base, entangler_3="all")]
    for variant in variants:  # unused layers, and the range of a range-free entangler
        assert variant != base
        assert space.encode_vars(space.decode_vars(variant)) == base


def test_decode_vars_rejects_names_outside_the_space_and_wrong_keys():
    space = SPACES[1]
    gene = space.encode_vars(space.sample(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="invalid embedding='angle_y'; allowed: amplitude, zz"):
        space.decode_vars({**gene, "embedding": "angle_y"})
    with pytest.raises(ValueError, match="invalid entangler_1=1; allowed: odd, chain"):
        space.decode_vars({**gene, "entangler_1": 1})  # an index is not a category
    with pytest.raises(ValueError, match="invalid n_qubits='3'"):
        space.decode_vars({**gene, "n_qubits": "3"})
    with pytest.raises(ValueError, match="exactly the keys"):
        space.decode_vars({k: v for k, v in gene.items() if k != "rotation"})
    with pytest.raises(ValueError, match="exactly the keys"):
        space.decode_vars([1, 2])


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_largest_and_smallest(space):
    widest = max(len(ROTATION_GATES[r]) for r in space.rotations)
    narrowest = min(len(ROTATION_GATES[r]) for r in space.rotations)
    for seed in range(5):
        big, small = space.largest(np.random.default_rng(seed)), space.smallest(np.random.default_rng(seed))
        assert big in space and small in space
        big_shape = (big.n_qubits, big.n_layers, len(ROTATION_GATES[big.rotation]))
        small_shape = (small.n_qubits, small.n_layers, len(ROTATION_GATES[small.rotation]))
        assert big_shape == (space.qubits[1], space.layers[1], widest)
        assert small_shape == (space.qubits[0], space.layers[0], narrowest)
    assert space.largest() == space.largest()  # deterministic without an rng
    assert space.max_qubits == space.qubits[1] and space.max_layers == space.layers[1]
    assert space.max_rotation_gates == widest


@pytest.mark.parametrize("field", ["embeddings", "rotations", "entanglers"])
def test_empty_choices(field):
    with pytest.raises(ValueError, match="empty search space") as info:
        SearchSpace(**{field: ()})
    assert field in str(info.value)


@pytest.mark.parametrize("field, value, allowed_values", [
    ("embeddings", ("angle_y", "angle_w"), EMBEDDINGS),
    ("rotations", ("rz",), ROTATIONS),
    ("entanglers", ("ring",), ENTANGLERS),
])
def test_bad_choices(field, value, allowed_values):
    with pytest.raises(ValueError) as info:
        SearchSpace(**{field: value})
    assert field[:-1] in str(info.value) and allowed(allowed_values) in str(info.value)


@pytest.mark.parametrize("field, value", [
    ("qubits", (3, 2)), ("qubits", (0, 4)), ("qubits", "many"), ("qubits", (1, 2, 3)), ("qubits", 0),
    ("layers", (0, 2)), ("layers", (2, 1)), ("layers", None),
    ("ranges", (0, 2)), ("ranges", (3, 1)),
    ("learning_rates", (0.1,)), ("learning_rates", (0.0, 0.1)), ("learning_rates", (0.1, 0.01)),
    ("learning_rates", (1e-3, math.inf)), ("learning_rates", "fast"),
])
def test_bad_bounds(field, value):
    with pytest.raises(ValueError) as info:
        SearchSpace(**{field: value})
    message = str(info.value)
    assert field in message and "allowed" in message


def test_amplitude_space_width_is_bounded():
    with pytest.raises(ValueError, match="qubits.*amplitude"):
        SearchSpace(qubits=(2, MAX_AMPLITUDE_QUBITS + 1))
    SearchSpace(qubits=(2, MAX_AMPLITUDE_QUBITS + 1), embeddings=("angle_y",))


def test_duplicate_choices_are_dropped_in_order():
    space = SearchSpace(embeddings=("zz", "angle_y", "zz"), rotations="ry")
    assert space.embeddings == ("zz", "angle_y") and space.rotations == ("ry",)


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_space_dict_round_trip(space):
    data = space.to_dict()
    assert SearchSpace.from_dict(data) == space
    assert SearchSpace.from_dict(json.loads(json.dumps(data))) == space
    assert eval(repr(space), {"SearchSpace": SearchSpace}) == space
    assert space != SearchSpace(qubits=(1, 2), layers=(1, 1))


@pytest.mark.parametrize("kwargs, field", [
    ({"qubits": (2.7, 3.2)}, "qubits"),
    ({"qubits": (True, 2)}, "qubits"),
    ({"qubits": 3.0}, "qubits"),
    ({"qubits": "23"}, "qubits"),
    ({"layers": (1, 2, 3)}, "layers"),
    ({"ranges": (1.5, 2)}, "ranges"),
    ({"embeddings": 5}, "embeddings"),
    ({"rotations": None}, "rotations"),
    ({"learning_rates": (True, 0.1)}, "learning_rates"),
    ({"learning_rates": ("0.01", "0.1")}, "learning_rates"),
    ({"learning_rates": (0.01, float("nan"))}, "learning_rates"),
])
def test_space_arguments_are_not_rounded_or_coerced(kwargs, field):
    with pytest.raises(ValueError, match=f"invalid {field}=.*allowed"):
        SearchSpace(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"entangle_range": 2.7, "entangler": "all"}, "entangle_range"),
    ({"entangle_range": "a", "entangler": "chain"}, "entangle_range"),
    ({"entangle_range": True, "entangler": "none"}, "entangle_range"),
    ({"learning_rate": True}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"rotation": ["ry"]}, "rotation"),
])
def test_architecture_arguments_are_not_coerced(kwargs, field):
    with pytest.raises(ValueError, match=f"invalid {field}=.*allowed"):
        Architecture(3, 1, **kwargs)
