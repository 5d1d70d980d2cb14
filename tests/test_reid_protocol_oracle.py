"""Oracle checks against fast-reid's own code, skipped unless the `fastreid` wheel is importable.

Install into a scratch environment (it pins an old torch, hence --no-deps):
    pip install --no-deps fastreid==1.4.0 yacs termcolor faiss-cpu
`fastreid/evaluation/rank.py` is loaded by file path: the `fastreid.evaluation` package itself does not
import on Python >= 3.10 (`from collections import Mapping` in fastreid/data/build.py). Without a compiled
Cython extension, its relative import fails and rank.py falls back to its Python path, the one compared here.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.reid_protocol import jaccard_distance, rank_eval

SPEC = importlib.util.find_spec("fastreid")
pytestmark = pytest.mark.skipif(SPEC is None, reason="fastreid (PyPI wheel 1.4.0) is not installed")


def load_by_path(relative: str, name: str):
    path = Path(SPEC.origin).parent / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cython rank evaluation ... unavailable"
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(5))
def test_rank_eval_equals_fast_reid_python_path(seed):
    rank = load_by_path("evaluation/rank.py", "fastreid_rank_by_path")
    rng = np.random.default_rng(seed)
    q, g = 60, 400
    dist = rng.random((q, g)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 40, q), rng.integers(0, 40, g)
    q_cams, g_cams = rng.integers(0, 6, q), rng.integers(0, 6, g)
    cmc, all_ap, all_inp = rank.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50, use_cython=False)
    ours = rank_eval(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6)
    np.testing.assert_allclose(ours.ap, all_ap, atol=1e-6)
    np.testing.assert_allclose(ours.inp, all_inp, atol=1e-6)


def test_jaccard_equals_fast_reid_with_faiss_cpu():
    pytest.importorskip("faiss")
    try:
        from fastreid.utils.compute_dist import compute_jaccard_distance
    except ImportError as exc:
        pytest.skip(f"fastreid.utils.compute_dist does not import: {exc}")
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((10, 32))
    features = (np.repeat(centres, 30, axis=0) + 0.5 * rng.standard_normal((300, 32))).astype(np.float32)
    theirs = compute_jaccard_distance(torch.from_numpy(features), k1=20, k2=6, search_option=3)
    np.testing.assert_allclose(jaccard_distance(features, 20, 6), theirs, atol=1e-6)
