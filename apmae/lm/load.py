"""Load the target model: any Hugging Face causal LM, by hub name or local path.

The one place that calls ``from_pretrained`` for target models. Attention is apmae's
:data:`~apmae.capture.CAPTURE_ATTENTION`: SDPA, plus the probabilities inside
``record_attention``; ``None`` means the embedded default model shipped inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..capture import CAPTURE_ATTENTION
from ..configs import DTYPES
from ..distributed import rank_device
from ..paths import DEFAULT_MODEL_DIR
from .fim import SpecialIds, special_ids
from .tokenizer import tokenizer_fingerprint


class ModelLoadError(ValueError):
    """The name or path does not give a usable causal LM."""


@dataclass
class TargetModel:
    """A loaded target model with what the pipeline needs to know about it."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    ids: SpecialIds
    layers: int
    heads: int
    max_context: int | None  # positions the model supports, when its config says
    dtype: torch.dtype = torch.float32
    random_weights: bool = False  # made by `apmae lm init`: for sizing and testing only

    @property
    def tokenizer_sha(self) -> str:
        return tokenizer_fingerprint(self.tokenizer)

    def check_window(self, window: int, extra: int = 0) -> None:
        """Refuse a window (plus ``extra`` generated tokens) longer than the model's context."""
        if self.max_context is not None and window + extra > self.max_context:
            raise ModelLoadError(f"window of {window} tokens (+{extra} generated) exceeds "
                                 f"{self.name}'s context of {self.max_context} tokens")


def resolve_model_name(name: str | None) -> str:
    """The path or hub name to load; None/"default" is the shipped model, which must exist."""
    if name not in (None, "", "default"):
        return name
    if not (DEFAULT_MODEL_DIR / "config.json").exists():
        raise ModelLoadError(f"the default model is missing from {DEFAULT_MODEL_DIR} "
                             "(train it with `apmae lm train`, then `apmae lm ship`)")
    return str(DEFAULT_MODEL_DIR)


def trust_remote_code() -> bool:
    """Whether a model's own Python code (``trust_remote_code``) may run: only when
    ``APMAE_TRUST_REMOTE_CODE=1`` says so; architectures transformers knows never need it."""
    return os.environ.get("APMAE_TRUST_REMOTE_CODE") == "1"


def load_tokenizer(name: str | None = None):
    """The tokenizer of a target model alone: what reading its prompts needs, without weights."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_name(name), trust_remote_code=trust_remote_code())


#: Models of at least this many parameters load in half precision unless told otherwise.
LARGE_MODEL_PARAMETERS = 1_000_000_000


def choose_dtype(dtype: str | torch.dtype | None, parameters: int,
                 device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype to load a model of ``parameters`` in: ``dtype`` when given (a name of
    :data:`DTYPES`), else ("auto", None) float32 below :data:`LARGE_MODEL_PARAMETERS` and
    bfloat16 from there (float16 on a GPU without bfloat16).

    Why a threshold rather than bfloat16 everywhere: bfloat16 changes the embedded default
    model's greedy completions (its model card, the tests and bench/RESULTS.md were measured in
    float32), and a small model gains nothing from half the memory; a large one is where
    float32 does not fit (a 3B model needs twice the memory in float32). bfloat16 runs on every
    CPU torch supports, natively where the CPU has bfloat16 instructions."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in (None, "auto"):
        if dtype not in DTYPES:
            raise ModelLoadError(f"dtype {dtype!r}: one of auto, {', '.join(DTYPES)}")
        return getattr(torch, dtype)
    if parameters < LARGE_MODEL_PARAMETERS:
        return torch.float32
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def load_target(name: str | None = None, device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None, device_map: str | None = None) -> TargetModel:
    """Load a causal LM and its tokenizer with capturing attention, in eval mode, in ``dtype``
    (:func:`choose_dtype`; None: by the model's size); under torchrun a bare ``cuda`` device is
    this rank's GPU (:func:`apmae.distributed.rank_device`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .shapes import parameter_count

    path = resolve_model_name(name)
    if Path(path).exists() and not (Path(path) / "config.json").exists():
        raise ModelLoadError(f"{path}: no config.json, not a Hugging Face model folder")
    remote = trust_remote_code()
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
        on = "cuda" if device_map and torch.cuda.is_available() else rank_device(device)
        dtype = choose_dtype(dtype, parameter_count(config, remote), on)
        # safetensors only: a pickled checkpoint (pytorch_model.bin) can run code when loaded
        # device_map ("auto"): a model too big for one device is split over the visible GPUs
        # (and CPU) by accelerate, layer by layer; capture and ablation work on it unchanged
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=CAPTURE_ATTENTION, dtype=dtype,
                                                     use_safetensors=True, trust_remote_code=remote,
                                                     device_map=device_map)
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{path}: cannot load a causal LM ({str(e).splitlines()[0]})") from e
    if device_map is None:
        model.to(rank_device(device))
    model.eval()
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return TargetModel(
        name="default" if path == str(DEFAULT_MODEL_DIR) else path,
        model=model, tokenizer=tokenizer, ids=special_ids(tokenizer),
        layers=text_config.num_hidden_layers, heads=text_config.num_attention_heads,
        max_context=getattr(text_config, "max_position_embeddings", None), dtype=dtype,
        random_weights=hasattr(config, "apmae_random_init"),
    )
