"""Models of a named shape with random weights (``apmae lm init``): for sizing and testing.

What a run costs (time, memory, storage, page sizes) depends on a model's shape, not on its
weights, so a StarCoder2-3B-shaped model with random weights measures what the real one would,
on a machine that cannot download it. Such a model has nothing to study: its config
(``apmae_random_init``) and its card say so.

The shapes' hyper-parameters are those of the released checkpoints' ``config.json`` on the
Hugging Face hub (``bigcode/starcoder2-3b``, ``-7b``, ``-15b``): layers, heads, key-value heads,
hidden and MLP sizes, RoPE theta, initializer range, 16,384 positions, a 4,096-token sliding
window, and tied input/output embeddings for 3B and 7B (their configs leave
``tie_word_embeddings`` at ``Starcoder2Config``'s default, true) but not 15B (``false`` in its
config). With their 49,152-token vocabulary they have 3.03B, 7.17B and 15.96B parameters, the
published sizes (``tests/test_lm_shapes.py`` checks this without allocating). The models made
here carry apmae's default tokenizer instead, so their vocabulary is its (smaller) one and every
token they emit can be decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The released checkpoints' vocabulary: what the published parameter counts include.
STARCODER2_VOCAB = 49152

#: Per shape: (layers, heads, kv_heads, hidden, intermediate, rope_theta, initializer_range,
#: tie_word_embeddings), from each checkpoint's config.json on the hub.
SHAPES: dict[str, tuple[int, int, int, int, int, float, float, bool]] = {
    "starcoder2-3b": (30, 24, 2, 3072, 12288, 999999.4420358813, 0.018042, True),
    "starcoder2-7b": (32, 36, 4, 4608, 18432, 1000000.0, 0.018042, True),
    "starcoder2-15b": (40, 48, 4, 6144, 24576, 100000.0, 0.01275, False),
}

RANDOM_NOTE = ("random weights (apmae lm init): a model for sizing and testing apmae, never one "
               "to study; its attention patterns mean nothing")


@dataclass(frozen=True)
class Shape:
    """A Starcoder2 shape: a named one or explicit sizes (the rest as in StarCoder2-3B)."""

    layers: int
    heads: int
    kv_heads: int
    hidden: int
    intermediate: int
    rope_theta: float = SHAPES["starcoder2-3b"][5]
    initializer_range: float = SHAPES["starcoder2-3b"][6]
    tie_embeddings: bool = True
    name: str = "custom"

    @classmethod
    def named(cls, name: str) -> "Shape":
        if name not in SHAPES:
            raise ValueError(f"unknown shape {name!r}: one of {', '.join(SHAPES)}")
        return cls(*SHAPES[name], name=name)

    def check(self) -> None:
        """Refuse sizes Starcoder2 cannot be built with, before anything is allocated."""
        if min(self.layers, self.heads, self.kv_heads, self.hidden, self.intermediate) < 1:
            raise ValueError("--layers, --heads, --kv-heads, --hidden and --intermediate must be >= 1")
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"--hidden {self.hidden} must be a multiple of --heads {self.heads} "
                             "with an even head size (RoPE rotates pairs)")
        if self.heads % self.kv_heads:
            raise ValueError(f"--heads {self.heads} must be a multiple of --kv-heads {self.kv_heads}")


def starcoder2_config(shape: Shape, vocab_size: int, eos: int = 0):
    """A ``Starcoder2Config`` of ``shape``; fields not in :class:`Shape` are the checkpoints'
    (GELU-tanh MLP, biases, layer norm 1e-5, 16,384 positions, 4,096-token sliding window)."""
    from transformers import Starcoder2Config

    shape.check()
    return Starcoder2Config(
        vocab_size=vocab_size, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads, max_position_embeddings=16384, sliding_window=4096,
        rope_theta=shape.rope_theta, initializer_range=shape.initializer_range,
        tie_word_embeddings=shape.tie_embeddings, hidden_act="gelu_pytorch_tanh",
        norm_epsilon=1e-5, use_bias=True, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )


def parameter_count(config, trust_remote_code: bool = False) -> int:
    """Parameters of the causal LM ``config`` describes, counted on the meta device (nothing
    allocated, so a 15B config costs what a tiny one does); tied weights counted once."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def init_model(shape: Shape, out: Path, seed: int = 0, dtype: str | None = None) -> dict:
    """Save a ``shape`` Starcoder2 with seeded random weights and the default tokenizer in
    ``out`` (safetensors, a config marked random, a card); ``dtype`` None follows
    :func:`apmae.lm.load.choose_dtype` (float32 for small models, bfloat16 for large ones).
    Returns what the card records."""
    import torch
    from transformers import AutoModelForCausalLM

    from ..paths import DEFAULT_MODEL_DIR
    from .fim import special_ids
    from .load import choose_dtype, load_tokenizer

    tokenizer = load_tokenizer(str(DEFAULT_MODEL_DIR))
    config = starcoder2_config(shape, len(tokenizer), special_ids(tokenizer).eos)
    n = parameter_count(config)
    torch_dtype = choose_dtype(dtype, n, "cpu")
    facts = {"shape": shape.name, "layers": shape.layers, "heads": shape.heads,
             "kv_heads": shape.kv_heads, "hidden": shape.hidden, "intermediate": shape.intermediate,
             "vocab_size": len(tokenizer), "parameters": n, "seed": seed,
             "dtype": str(torch_dtype).removeprefix("torch."), "note": RANDOM_NOTE}
    config.apmae_random_init = facts
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(_card(facts))
    return facts


def _card(facts: dict) -> str:
    rows = "\n".join(f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |"
                     for k, v in facts.items() if k != "note")
    source = (f"`bigcode/{facts['shape']}`'s config.json" if facts["shape"] in SHAPES else
              "as given; the rest are `bigcode/starcoder2-3b`'s config.json's")
    return (f"# A {facts['shape']} Starcoder2 with RANDOM weights\n\n"
            f"{RANDOM_NOTE[0].upper()}{RANDOM_NOTE[1:]}. Its cost (time, memory, storage) is the "
            "shape's; nothing it completes or attends to is a finding.\n\n"
            f"| field | value |\n|---|---|\n{rows}\n\n"
            f"Sizes: {source}; the tokenizer is apmae's default one.\n")
