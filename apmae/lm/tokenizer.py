"""The default model's byte-level BPE tokenizer, trained with HF ``tokenizers``.

Its pre-tokenizer is code-aware: identifiers, numbers, single brackets/punctuation, runs of
operator symbols and whitespace are separate pieces (each optionally led by one space), so a
masked identifier, literal or bracket always starts on a token boundary and the FIM target's
"first token" is well defined. (GPT-2's regex fuses pieces like ``("`` or ``_x``.)
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FIM_PAD = "<fim_pad>"
SPECIAL_TOKENS = [EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD]

#: Code-aware pre-tokenization (see module docstring).
PRETOKENIZE = (
    r" ?[\p{L}_$][\p{L}\p{N}_$]*"  # identifiers and keywords
    r"| ?\p{N}+"  # digit runs
    r"| ?[(){}\[\];,.@\"'`\\]"  # brackets, punctuation, quotes: one each
    r"| ?[^\s\p{L}\p{N}_$(){}\[\];,.@\"'`\\]+"  # operator runs: ==, +=, ->, &&
    r"|\s+(?!\S)|\s+"  # whitespace; its last space joins the next piece
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Train the BPE tokenizer on ``texts``; special tokens take the first ids."""
    # imported here, not at the top: mining and `apmae --help` need only the special tokens
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=True,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
        additional_special_tokens=[FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD],
        model_max_length=4096, clean_up_tokenization_spaces=False,
    )


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary: scenarios mined with one tokenizer need the same one."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha1(repr(vocab).encode()).hexdigest()[:12]
