"""The embedded default model's card as facts (JSON): the pages render it from these rather
than parse its Markdown, which stays at /api/model-card for people and tools that read text."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from ..schemas import errors

router = APIRouter(prefix="/api", tags=["atlas"])

#: config.json's keys that describe the architecture (the rest is generation bookkeeping).
ARCHITECTURE = ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "hidden_size", "intermediate_size", "vocab_size", "max_position_embeddings", "dtype")


class AccuracyOut(BaseModel):
    n: int
    accuracy_first_token: float | None
    accuracy_exact: float | None


class HeldoutOut(BaseModel):
    by_task: dict[str, AccuracyOut]
    overall_non_noise: AccuracyOut


class ModelCardFactsOut(BaseModel):
    """What the card says, as shipped beside the weights by ``apmae lm ship``."""

    architecture: dict[str, Any]
    stages: list[dict[str, Any]]
    data: dict[str, Any]
    heldout: HeldoutOut
    curve: dict[int, HeldoutOut]


@router.get("/model-card/facts", response_model=ModelCardFactsOut, responses=errors(404))
def model_card_facts() -> dict:
    """The embedded default model's card as facts: its architecture, its training stages
    (configs), the corpus's identity, and held-out accuracy at the end and along training."""
    from apmae.paths import DEFAULT_MODEL_DIR

    files = {name: DEFAULT_MODEL_DIR / f"{name}.json"
             for name in ("config", "train_config", "data", "heldout")}
    if not all(p.exists() for p in files.values()):
        raise HTTPException(404, "the embedded model has no card")
    read = {name: json.loads(p.read_text(encoding="utf-8")) for name, p in files.items()}
    return {"architecture": {k: read["config"][k] for k in ARCHITECTURE if k in read["config"]},
            "stages": read["train_config"], "data": read["data"],
            "heldout": read["heldout"]["final"], "curve": read["heldout"]["curve"]}
