"""Fixtures shared by several test modules."""

import pickle
from pathlib import Path

import pytest


class _CreatesAFile:
    """A pickle payload: unpickling it opens (so creates) ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def crafted_pickle(tmp_path):
    """``crafted_pickle(path)``: the bytes of a pickle whose unpickling creates the file ``path`` (checked live
    on a probe file first, so a test that finds no ``path`` afterwards shows that nothing unpickled it)."""

    def make(path: Path) -> bytes:
        probe = tmp_path / "unpickling-probe"
        pickle.loads(pickle.dumps(_CreatesAFile(probe))).close()
        assert probe.exists()
        probe.unlink()
        return pickle.dumps(_CreatesAFile(path))

    return make
