"""Train the embedded default model: a small Starcoder2 with a FIM objective, on a CPU.

Every example is built with the same ``build_window`` the scenarios use, so the model is
trained on exactly the prompt shape it is evaluated on: a ``window``-token PSM prompt, then
the middle and ``<|endoftext|>``. Middles follow the scenario tasks' shapes: one lexeme
(identifier, literal, bracket, operator, ``;\\n``), a run of 2–10 lexemes, or a few random
characters; a share of plain left-to-right windows keeps ordinary language modelling.
With ``task_share`` > 0, that share of the middles is syntax-aware instead (as in AST-aware
FIM): a task drawn uniformly, then one of its spans found by the same tree-sitter and regex
queries the miner uses — lexeme sampling follows token frequency, so an operator or a
boolean literal is a middle a few times in a thousand and a small model never learns to
answer one.
Middle and end-of-text tokens get a fixed share of the loss (``fim_loss``).

Resumable: ``--resume`` continues from the last atomic checkpoint, sampler state included,
so a run cut off by a session limit continues bit-for-bit where it stopped.
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import Starcoder2Config, Starcoder2ForCausalLM

from ..configs import LMTrainConfig
from ..corpus import Corpus
from ..spans import SPAN_TASKS, find_spans, parse_java, random_token_span
from ..paths import atomic_path
from ..training import adamw, lr_at
from .fim import SpecialIds, build_window, encode, special_ids
from .tokenizer import train_tokenizer

#: Tasks a ``task_share`` middle is drawn from: every scenario task but the noise control.
TASK_SPAN_TASKS = (*SPAN_TASKS, "random")

#: Java lexemes: string/char literals, numbers, identifiers, punctuation, operator runs.
LEXEME = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)+\''
    r"|0[xXbB][0-9a-fA-F_]+[lL]?|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?[lLfFdD]?"
    r"|[A-Za-z_$][\w$]*|[(){}\[\];,.@]|[-+*/%=!<>&|^~?:]+"
)
PROMPT, MIDDLE = 1, 2  # token roles in the loss


#: Fields that fix the architecture and tokenizer: a warm start must keep them.
ARCHITECTURE = ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "mlp")


def sample_span(rng: np.random.Generator, text: str) -> tuple[int, int] | None:
    """A middle to mask, shaped like the scenario tasks (see module docstring)."""
    kind = rng.random()
    if kind < 0.1:  # random characters
        start = int(rng.integers(0, max(1, len(text) - 1)))
        return start, min(len(text), start + int(rng.integers(1, 31)))
    pos = int(rng.integers(0, len(text)))
    lexemes = list(LEXEME.finditer(text, pos, min(len(text), pos + 400)))
    before = LEXEME.match(text, pos - 1) if pos > 0 else None
    if lexemes and before is not None and before.end() > pos:
        lexemes = lexemes[1:]  # a lexeme cut by the random position is no scenario's shape
    if not lexemes:
        return None
    first = lexemes[0]
    if kind < 0.7:  # one lexeme; a statement's ';' sometimes with its newline
        end = first.end()
        if first.group() == ";" and text.startswith("\n", end) and rng.random() < 0.5:
            end += 1
        return first.start(), end
    run = min(len(lexemes), int(rng.integers(2, 11)))  # a run of lexemes
    return first.start(), lexemes[run - 1].end()


class ExampleSampler:
    """Draws training sequences of a fixed length from the train split, reproducibly."""

    def __init__(self, texts: list[str], tokenizer, cfg: LMTrainConfig,
                 rng: np.random.Generator) -> None:
        self.texts, self.tok, self.cfg, self.rng = texts, tokenizer, cfg, rng
        self.ids: SpecialIds = special_ids(tokenizer)
        self.task_spans: dict[tuple[int, str], np.ndarray] = {}  # (text, task) -> [n, 2] int32
        short = [int(w) for w in cfg.short_windows.split(",") if w.strip()]
        self.windows = [cfg.window, *short]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids, roles``, each ``[m, window + max_middle + 1]``; roles: 0 ignored,
        1 prompt, 2 middle.

        The window is drawn per batch from ``window`` and ``short_windows``; a short-window
        batch holds proportionally more sequences (same tokens per step), so it teaches the
        model many more middles — where a small model is slowest to learn to find the end of
        the prefix — for the same compute.
        """
        window = self.windows[int(self.rng.integers(len(self.windows)))]
        rows = [self.example(window) for _ in range(n * self.cfg.window // window)]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])

    def example(self, window: int) -> tuple[list[int], list[int]]:
        while True:
            text = self.texts[int(self.rng.integers(len(self.texts)))]
            if self.rng.random() < self.cfg.plain_share:
                row = self._plain(text, window)
            else:
                row = self._fim(text, window)
            if row is not None:
                return row

    def _plain(self, text: str, window: int) -> tuple[list[int], list[int]] | None:
        length = window + self.cfg.max_middle + 1
        start = int(self.rng.integers(0, len(text)))
        ids = encode(self.tok, [text[start:start + length * 8]])[0][1:]  # drop a cut piece
        if len(ids) < length:
            return None
        return ids[:length], [0] + [PROMPT] * (length - 1)

    def _fim(self, text: str, window: int) -> tuple[list[int], list[int]] | None:
        if self.rng.random() < self.cfg.task_share:
            span = self._task_span(text)
        else:
            span = sample_span(self.rng, text)
        if span is None or span[1] <= span[0]:
            return None
        w = build_window(self.tok, text, span[0], span[1], window, self.ids)
        if w is None or not w.target_ids or len(w.target_ids) > self.cfg.max_middle:
            return None
        ids = w.input_ids + w.target_ids + [self.ids.eos]
        # the role of the token at position t is that of predicting it from t-1
        roles = [0] + [PROMPT] * (window - 1) + [MIDDLE] * (len(w.target_ids) + 1)
        pad = window + self.cfg.max_middle + 1 - len(ids)
        return ids + [self.ids.eos] * pad, roles + [0] * pad


    def _task_span(self, text: str) -> tuple[int, int] | None:
        """A span of a uniformly drawn scenario task (``random``: 3–10 tokens), or None."""
        task = TASK_SPAN_TASKS[int(self.rng.integers(len(TASK_SPAN_TASKS)))]
        if task == "random":
            return random_token_span(self.tok, text, random.Random(int(self.rng.integers(2**32))))
        key = (id(text), task)
        if key not in self.task_spans:  # the texts live as long as the sampler: ids are stable
            tree = parse_java(text)
            for t in SPAN_TASKS:
                found = [] if tree is None else find_spans(t, text, tree)
                self.task_spans[(id(text), t)] = np.asarray(found, dtype=np.int32).reshape(-1, 2)
        spans = self.task_spans[key]
        if not len(spans):
            return None
        start, end = spans[int(self.rng.integers(len(spans)))]
        return int(start), int(end)


def model_config(cfg: LMTrainConfig, tokenizer) -> Starcoder2Config:
    ids = special_ids(tokenizer)
    return Starcoder2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.mlp,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads, max_position_embeddings=2048,
        bos_token_id=ids.eos, eos_token_id=ids.eos, pad_token_id=ids.eos,
        tie_word_embeddings=True, use_bias=True, initializer_range=0.02,
    )


def check_init(init: Path, cfg: LMTrainConfig) -> None:
    """A warm start needs a finished run with the same architecture, or a clear error."""
    try:
        first = json.loads((init / "train_config.json").read_text())
        state = torch.load(init / "checkpoint.pt", weights_only=False)["state"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--init-from {init}: not an `apmae lm train` folder ({e})") from e
    if state["step"] != first["steps"]:
        raise ValueError(f"--init-from {init}: that run stopped at step {state['step']} of "
                         f"{first['steps']}; finish it with --resume first")
    differ = [k for k in ARCHITECTURE if first[k] != getattr(cfg, k)]
    if differ:
        raise ValueError(f"--init-from {init}: architecture differs in {', '.join(differ)}")


def fim_loss(logits: torch.Tensor, ids: torch.Tensor, roles: torch.Tensor,
             middle_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy, the mean over middle tokens weighing ``middle_share``.

    A window has ~255 prompt tokens and a handful of middle tokens: weighted per token, the
    middle — the only part the scenarios evaluate — would steer a few percent of the gradient
    and a small model would stay at unigram guesses after ``<fim_middle>`` for hours.
    Returns ``(loss, middle_loss)``.
    """
    logits, ids, roles = logits[:, :-1].float(), ids[:, 1:], roles[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids.reshape(-1),
                         reduction="none").view_as(roles)
    prompt = ce[roles == PROMPT].mean()
    middle = ce[roles == MIDDLE].mean() if bool((roles == MIDDLE).any()) else prompt.new_zeros(())
    return (1 - middle_share) * prompt + middle_share * middle, middle


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time spent training, summed over resumed segments
    log: list[dict] = field(default_factory=list)


def train_lm(cfg: LMTrainConfig, out: Path, resume: bool = False) -> Path:
    """Train tokenizer and model into ``out``; returns the final model folder ``out/final``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    texts = [f.text for f in tqdm(Corpus(cfg.source, split="train"), desc="reading corpus")]
    if not texts:
        raise ValueError(f"{cfg.source}: no readable Java files in the train split")
    tok_dir = out / "tokenizer"
    init = Path(cfg.init_from) if cfg.init_from else None
    if init is not None:
        check_init(init, cfg)
    if (resume and tok_dir.exists()) or init is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir if resume and tok_dir.exists()
                                                  else init / "tokenizer")
        tokenizer.save_pretrained(tok_dir)
    else:
        pick = np.random.default_rng(cfg.seed).choice(len(texts), min(cfg.tokenizer_files, len(texts)),
                                                      replace=False)
        tokenizer = train_tokenizer((texts[i] for i in pick), cfg.vocab_size)
        tokenizer.save_pretrained(tok_dir)

    torch.manual_seed(cfg.seed)
    model = Starcoder2ForCausalLM(model_config(cfg, tokenizer))
    opt = adamw(model, cfg.lr, cfg.weight_decay, exempt=lambda name: "embed" in name)
    rng = np.random.default_rng(cfg.seed)
    state = TrainState()
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        rng.bit_generator.state = ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        state = TrainState(**ckpt["state"])
    elif init is not None:
        model.load_state_dict(torch.load(init / "checkpoint.pt", weights_only=False)["model"])
    sampler = ExampleSampler(texts, tokenizer, cfg, rng)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "train_config.json").write_text(json.dumps({**asdict(cfg), "parameters": n_params}, indent=2))

    model.train()
    bar = tqdm(total=cfg.steps, initial=state.step, desc="lm train", unit="step")
    while state.step < cfg.steps:
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(state.step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
        ids, roles = sampler.batch(cfg.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = model(input_ids=ids).logits
        loss, middle_loss = fim_loss(logits, ids, roles, cfg.middle_share)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state.step += 1
        state.tokens += ids.numel()
        state.seconds += time.perf_counter() - t0
        state.log.append({"step": state.step, "loss": round(loss.item(), 4),
                          "middle_loss": round(middle_loss.item(), 4),
                          "lr": opt.param_groups[0]["lr"], "tokens": state.tokens,
                          "seconds": round(state.seconds, 1)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", middle=f"{middle_loss.item():.3f}",
                        tok_s=f"{state.tokens / state.seconds:.0f}")
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            with atomic_path(ckpt_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                            "state": asdict(state)}, tmp)
        if state.step % cfg.snapshot_every == 0 or state.step == cfg.steps:
            save_model(model, tokenizer, out / f"snapshot-{state.step:06d}", state)
    bar.close()
    final = out / "final"
    save_model(model, tokenizer, final, state)
    return final


def save_model(model: Starcoder2ForCausalLM, tokenizer, path: Path, state: TrainState) -> None:
    """Save fp16 safetensors weights, the tokenizer (the shipped form) and the log so far."""
    path.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).to(torch.float16).save_pretrained(path)  # training weights stay fp32
    tokenizer.save_pretrained(path)
    (path / "train_log.json").write_text(json.dumps(asdict(state)))
