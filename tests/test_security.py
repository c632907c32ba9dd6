"""What the product refuses to trust: pickled weights, a model's own code, paths out of the
static folder, and a non-loopback address without a warning."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from apmae.lm.load import ModelLoadError, load_target, trust_remote_code
from server.app import create_app
from server.settings import Settings


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    import shutil

    import torch
    from safetensors.torch import load_file

    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, tmp_path)
    weights = load_file(tiny_model_dir / "model.safetensors")
    torch.save(weights, tmp_path / "pytorch_model.bin")  # the same weights as a pickle
    assert not list(tmp_path.glob("*.safetensors"))
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_target(str(tmp_path))
    assert load_target(str(tiny_model_dir)).layers == 2  # the same model as safetensors loads


def test_remote_code_only_when_asked(monkeypatch):
    monkeypatch.delenv("APMAE_TRUST_REMOTE_CODE", raising=False)
    assert trust_remote_code() is False
    monkeypatch.setenv("APMAE_TRUST_REMOTE_CODE", "1")
    assert trust_remote_code() is True


@pytest.mark.parametrize("path", ["/static/../server/app.py", "/static/%2e%2e/server/app.py",
                                  "/static/..%2fserver%2fapp.py", "/static//etc/passwd"])
def test_static_files_stay_in_their_folder(tmp_path, path):
    settings = Settings(run="none", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    with TestClient(create_app(settings)) as client:
        response = client.get(path)
        assert response.status_code == 404 or "create_app" not in response.text
        assert "root:" not in response.text
        assert client.get("/static/js/dom.js").status_code == 200


def test_serving_beyond_loopback_warns(monkeypatch, capsys):
    import uvicorn

    from apmae.cli.serve import serve_explorer

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr("server.app.create_app", lambda settings: None)
    serve_explorer("default", "127.0.0.1", 8000)
    assert "warning" not in capsys.readouterr().err
    serve_explorer("default", "0.0.0.0", 8000)
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
