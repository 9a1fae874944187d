"""A tiny llama GGUF written directly with gguf-py: a byte-level BPE vocabulary (every byte
is a token, so an answer can be spelt one byte at a time, the decoder's worst case) plus
multi-byte tokens JSON answers are made of (backslash runs, escapes, Windows-path pieces).

`favour` makes a degenerate model: every layer's weights are zero and every token shares
one embedding, so the logits are the same at every step, with the favoured tokens on top
in the given order: the model repeats them wherever the grammar lets it (the loop issue 17
saw: `\\\\` until the token cap). Without `favour` the weights are random (seeded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PIECES = ['\\\\', '\\\\\\\\', '\\"', '""', '":', '", "', 'null', 'C:', 'C:\\\\', '\\n', '\\u',
          'Program', 'Files', 'the', ' the', 'fix', 'kind', 'tags', 'path', '.exe', '..', '...',
          '{"', '"}', '"]', '["', '  ', '\n\n', 'aaaa', '0000', '-x', 'v1']
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the form byte-level BPE vocabularies store)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def vocab() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types, merges: each multi-byte piece is built by one merge of two
    tokens already in the vocabulary (its prefix and its last byte)."""
    enc = byte_unicode()
    tokens = [enc[b] for b in range(256)]
    merges = []
    for piece in PIECES:
        text = "".join(enc[b] for b in piece.encode())
        for i in range(2, len(text) + 1):  # every prefix, so each merge has both halves
            if text[:i] not in tokens:
                merges.append(f"{text[:i - 1]} {text[i - 1]}")
                tokens.append(text[:i])
    types = [1] * len(tokens) + [3] * len(SPECIAL)  # normal, then control
    return tokens + SPECIAL, types, merges


def write_tiny_gguf(path: Path, *, seed: int = 0, favour: list[str] | None = None,
                    n_embd: int = 32, n_layer: int = 2, n_head: int = 4, n_ff: int = 64,
                    name: str = "tiny-test", description: str | None = None) -> Path:
    from gguf import GGUFWriter

    tokens, types, merges = vocab()
    enc = byte_unicode()
    rng = np.random.default_rng(seed)
    n_vocab = len(tokens)

    def rand(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = GGUFWriter(str(path), "llama")
    w.add_name(name)
    if description is not None:
        w.add_description(description)
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all f32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)

    embd = rand(n_vocab, n_embd)
    out = rand(n_vocab, n_embd)
    zero = 0.0 if favour else 1.0
    if favour:  # one shared embedding, zero layers: the same logits at every step
        embd[:] = 1.0
        out[:] = rand(n_vocab, n_embd, scale=0.01)
        for rank, piece in enumerate(favour):
            out[tokens.index("".join(enc[b] for b in piece.encode()))] = 10.0 - rank
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", out)
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name, shape in (("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)),
                            ("attn_v", (n_embd, n_embd)), ("attn_output", (n_embd, n_embd)),
                            ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)),
                            ("ffn_down", (n_embd, n_ff))):
            w.add_tensor(p + name + ".weight", rand(*shape) * zero)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
