"""Tokenizers for the tiny pipelines, built in code from small vocabularies so nothing is downloaded.

- ``byte_alphabet``: the 256 byte-level BPE symbols (GPT-2 / CLIP / Qwen) every BPE here starts from.
- ``qwen_tokenizer``: a Qwen2Tokenizer (Qwen2, Qwen2.5-VL and Qwen3 text encoders).
- ``clip_tokenizer``: a CLIPTokenizer (SD, SDXL and FLUX.1 text encoders).
- ``t5_tokenizer``: a T5TokenizerFast (FLUX.1's second text encoder).

The builders pass what differs between the real models (special tokens, chat template, EOS, maximum
length, learnt merges); everything here is deterministic, so every build saves the same files.
"""

from __future__ import annotations

import itertools
import string
from collections import Counter
from collections.abc import Callable, Sequence

from tokenizers import AddedToken
from transformers import CLIPTokenizer, Qwen2Tokenizer, T5TokenizerFast

QWEN_EOS = "<|endoftext|>"

# Special tokens in the order the real Qwen2/Qwen2.5-VL/Qwen3 vocabularies append them after the BPE vocab.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A cut-down Qwen3 chat template: plain messages plus the `enable_thinking` switch that both
# Flux2KleinPipeline and ZImagePipeline pass (add_generation_prompt=True, enable_thinking=False).
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}"
    "{% endif %}"
    "{% endif %}"
)

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_MAX_LENGTH = 77  # == the CLIP text encoders' max_position_embeddings

# Words the CLIP tokenizer merges whole, so common prompt words are single tokens as with real CLIP.
CLIP_MERGE_WORDS = ("the", "a", "in", "of", "and", "red", "fox", "snow", "street", "sign", "blurry", "photo")


def byte_alphabet() -> list[str]:
    """The 256 GPT-2/CLIP/Qwen byte-level symbols, in byte order (``byte_alphabet()[b]`` stands for byte b)."""
    # Printable Latin-1 bytes stand for themselves; the others are shifted to 256, 257, ... in byte order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def train_bpe(pre_tokenize: Callable[[str], list], texts: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-level BPE merges learnt from `texts` until every pre-token is one token. Deterministic: the most
    frequent pair wins, ties go to the smallest pair."""
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for piece, _ in pre_tokenize(text):
            words[tuple(piece)] += 1
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged


def qwen_tokenizer(
    *,
    chat_template: str,
    merges_from: Sequence[str] = (),
    special_tokens: Sequence[str] = QWEN_SPECIAL_TOKENS,
    added_tokens: Sequence[str] = (),
    named_special_tokens: Sequence[str] = (),
    eos_token: str = QWEN_EOS,
    model_max_length: int = 32768,
    alphabet: Sequence[str] | None = None,
) -> Qwen2Tokenizer:
    """A Qwen2Tokenizer. Vocabulary: the byte symbols (`alphabet`, byte order by default), the merges learnt
    from the texts `merges_from` (none: one token per byte), then `special_tokens`, then `added_tokens`
    (ordinary added tokens, as Qwen3's <think>). `named_special_tokens` are also listed in
    tokenizer_config.json as extra special tokens. Padding is with <|endoftext|>, as in every Qwen."""
    alphabet = list(alphabet or byte_alphabet())
    merges: list[tuple[str, str]] = []
    if merges_from:
        # Learn merges with Qwen's own pre-tokenizer (splits words, digits and punctuation like the real one).
        bare = Qwen2Tokenizer(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[])
        merges = train_bpe(bare.backend_tokenizer.pre_tokenizer.pre_tokenize_str, merges_from)
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for token in [*special_tokens, *added_tokens]:
        vocab[token] = len(vocab)
    # Only pass the names when there are some: an empty list would still be written to tokenizer_config.json.
    named = {"additional_special_tokens": list(named_special_tokens)} if named_special_tokens else {}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=eos_token,
        pad_token=QWEN_EOS,
        model_max_length=model_max_length,
        **named,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens], special_tokens=True)
    if added_tokens:
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in added_tokens])
    tokenizer.chat_template = chat_template
    return tokenizer


def clip_tokenizer(
    *,
    pad_token: str = CLIP_EOS,
    merge_words: Sequence[str] = CLIP_MERGE_WORDS,
    specials_first: bool = False,
    alphabet: Sequence[str] | None = None,
) -> CLIPTokenizer:
    """Byte-level CLIP BPE: every byte symbol plus its word-final ``</w>`` variant, whole-word merges of
    `merge_words`, and <|startoftext|>/<|endoftext|>. The specials go last by default, like real CLIP, so
    the EOS token has the highest id and argmax pooling also finds it. `pad_token`: SD 2.x and SDXL's
    second tokenizer pad with "!", the others with <|endoftext|>."""
    chars = list(alphabet or byte_alphabet())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    for word in merge_words:
        # merge left-to-right: t h -> th, th e</w> -> the</w>
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merged = left + right
            if (left, right) not in merges:
                merges.append((left, right))
            if merged not in tokens:
                tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    tokens = [CLIP_BOS, CLIP_EOS, *tokens] if specials_first else [*tokens, CLIP_BOS, CLIP_EOS]
    return CLIPTokenizer(
        vocab={tok: i for i, tok in enumerate(tokens)},
        merges=merges,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        unk_token=CLIP_EOS,
        pad_token=pad_token,
        model_max_length=CLIP_MAX_LENGTH,
    )


def t5_tokenizer() -> T5TokenizerFast:
    """Unigram vocabulary of single characters (T5/SentencePiece style '▁' word marker)."""
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + ch, -3.0) for ch in chars] + [(ch, -4.0) for ch in chars]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)
