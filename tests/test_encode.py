"""Encoding every pattern of a run with AP-MAE: stored or recomputed, resumable."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from apmae.atlas.encode import Encoder, encode_run
from apmae.configs import EncodeConfig, ExtractConfig, MAETrainConfig
from apmae.extract import extract
from apmae.mae.train import train_mae
from apmae.run import Run


@pytest.fixture(scope="module")
def mae_model(tmp_path_factory, pattern_run):
    out = tmp_path_factory.mktemp("mae")
    cfg = MAETrainConfig(batch_size=8, steps=2, warmup=1, head_fraction=0.5, threads=1)
    return train_mae(pattern_run, cfg, out=out)


def test_every_scenario_gets_every_heads_embedding(tmp_path, pattern_run, mae_model):
    run = Run("copy", path=tmp_path / "copy")
    shutil.copytree(pattern_run.path, run.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    n = encode_run(run, EncodeConfig(batch_size=4), model_dir=mae_model)
    store = run.embeddings()
    results = list(run.results())
    assert n == len(results) == len(store)
    meta = run.meta()
    assert store.get(results[0]["id"]).shape == (meta["layers"], meta["heads"], 128)
    assert encode_run(run, EncodeConfig(), model_dir=mae_model) == 0  # a rerun has nothing to do


def test_an_ap_mae_retrained_in_place_encodes_afresh(tmp_path, pattern_run, mae_model):
    run = Run("copy", path=tmp_path / "copy")
    shutil.copytree(pattern_run.path, run.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    model_dir = tmp_path / "model"
    shutil.copytree(mae_model, model_dir)
    n = encode_run(run, EncodeConfig(), model_dir=model_dir)
    key = next(run.results())["id"]
    first = np.array(run.embeddings().get(key))
    retrained = train_mae(pattern_run, MAETrainConfig(batch_size=8, steps=2, warmup=1, head_fraction=0.5,
                                                      threads=1, seed=1), out=tmp_path / "mae1")
    shutil.rmtree(model_dir)
    shutil.copytree(retrained, model_dir)  # same folder, other weights
    assert encode_run(run, EncodeConfig(), model_dir=model_dir) == n  # every scenario again
    assert not np.array_equal(np.array(run.embeddings().get(key)), first)
    assert encode_run(run, EncodeConfig(), model_dir=model_dir) == 0


def test_unkept_patterns_are_recomputed_to_the_same_embeddings(tmp_path, pattern_run, mae_model,
                                                                tiny_target):
    full = Run("full", path=tmp_path / "full")
    shutil.copytree(pattern_run.path, full.path, ignore=shutil.ignore_patterns("embeddings", "mae"))
    encode_run(full, EncodeConfig(bf16=False), model_dir=mae_model)
    sparse = Run("sparse", path=tmp_path / "sparse")
    extract(sparse, pattern_run.scenarios_path, tiny_target, ExtractConfig(keep="sample:3"))
    assert len(sparse.pattern_store()) == 3
    encode_run(sparse, EncodeConfig(bf16=False), model_dir=mae_model, target=lambda: tiny_target)
    a, b = full.embeddings(), sparse.embeddings()
    for sid in a.ids():
        np.testing.assert_allclose(a.get(sid), b.get(sid), atol=2e-3, rtol=1e-2)


def test_extraction_that_encodes_as_it_goes_writes_what_encode_would(tmp_path, pattern_run, mae_model,
                                                                     tiny_target):
    after = Run("after", path=tmp_path / "after")
    extract(after, pattern_run.scenarios_path, tiny_target, ExtractConfig(keep="sample:3"))
    encode_run(after, EncodeConfig(bf16=False), model_dir=mae_model, target=lambda: tiny_target)
    fused = Run("fused", path=tmp_path / "fused")
    encoder = Encoder(fused, EncodeConfig(bf16=False), mae_model, tiny_target.layers, tiny_target.heads,
                      tiny_target.name)
    extract(fused, pattern_run.scenarios_path, tiny_target, ExtractConfig(keep="sample:3"),
            sink=encoder.write)
    assert encode_run(fused, EncodeConfig(bf16=False), model_dir=mae_model,
                      target=lambda: pytest.fail("nothing left to recompute")) == 0
    for store in ("embeddings", "pattern_stats", "row_stats"):
        a, b = getattr(after, store)(), getattr(fused, store)()
        assert sorted(a.ids()) == sorted(b.ids()) and len(a) == len(list(after.results()))
        for sid in a.ids():
            np.testing.assert_allclose(a.get(sid), b.get(sid), atol=2e-3, rtol=1e-2)


def test_encoding_needs_a_trained_mae(tmp_path, pattern_run):
    with pytest.raises(ValueError, match="no trained AP-MAE"):
        encode_run(pattern_run, EncodeConfig(), model_dir=tmp_path / "none")


def test_pattern_stats_of_known_patterns():
    import torch

    from apmae.atlas.encode import pattern_stats
    from apmae.store.format import lower_triangle

    T = 4
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    diagonal = torch.eye(T)
    packed = lower_triangle(torch.stack([uniform, diagonal]).clamp_min(1e-30).log())
    s = pattern_stats(packed)
    # uniform: entropy mean log(q+1); distance mean q/2; first token mean 1/(q+1); self the same
    q = torch.arange(T, dtype=torch.float32)
    torch.testing.assert_close(s[0], torch.stack([torch.log(q + 1).mean(), (q / 2).mean(),
                                                  (1 / (q + 1)).mean(), (1 / (q + 1)).mean()]))
    torch.testing.assert_close(s[1], torch.tensor([0.0, 0.0, 0.25, 1.0]), atol=1e-5, rtol=0)
