"""The tiny twins' CLIP tokenizer: a byte-level BPE vocabulary over a small English word list,
written as the four files of a released CLIP tokenizer folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# A small English vocabulary: every word a prompt in the docs, notebook or tests uses is one
# token; anything else still tokenises (byte-level fallback to characters).
WORDS = (
    "id photo of a an person the in with and best quality high low lowres monochrome bad anatomy "
    "worst blurry man woman portrait face smiling red dress garden wearing glasses hat light studio "
    "looking at camera old young beach city street closeup close up on is for to black white hair "
    "blue green eyes background professional film analog cinematic detailed ugly deformed mutated "
    "disfigured watermark text painting drawing illustration glitch cross eyed sharp focus natural "
    "soft lighting outdoors indoors sunny day night headshot suit shirt beard long short curly "
    "brown blonde dark skin happy serious neutral expression"
).split()


def _bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2 byte-level alphabet: 256 printable stand-ins for the 256 byte values."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json + merges for a CLIP BPE tokenizer over :data:`WORDS` (``id`` is merge 0)."""
    alphabet = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        current = symbols[0]
        for sym in symbols[1:]:
            merged = current + sym
            if merged not in vocab:
                merges.append((current, sym))
                vocab[merged] = len(vocab)
            current = merged
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def write_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """The four files of a released CLIP tokenizer folder (vocab, merges, two configs)."""
    vocab, merges = build_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "pad_token": pad_token, "unk_token": "<|endoftext|>"}
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(folder / "tokenizer_config.json", {
        **special, "model_max_length": 77, "do_lower_case": True, "errors": "replace",
        "add_prefix_space": False, "tokenizer_class": "CLIPTokenizer",
    })


