"""Ask a llama.cpp grammar, through its own sampler, whether one token may come next
(shared by the grammar tests on tiny GGUFs and the chain test on the trained one)."""
from __future__ import annotations

import ctypes


def allows(llm, grammar, prefix: str, piece: str) -> bool:
    """Whether the grammar, having read `prefix`, lets `piece` (one token) come next."""
    from llama_cpp import llama_cpp as C

    sampler = C.llama_sampler_init_grammar(llm._model.vocab, grammar._grammar.encode(),
                                           grammar._root.encode())
    try:
        for token in llm.tokenize(prefix.encode(), add_bos=False, special=False):
            C.llama_sampler_accept(sampler, token)
        (token,) = llm.tokenize(piece.encode(), add_bos=False, special=False)
        one = (C.llama_token_data * 1)(C.llama_token_data(token, 0.0, 0.0))
        arr = C.llama_token_data_array(one, 1, -1, False)
        C.llama_sampler_apply(sampler, ctypes.byref(arr))
        return one[0].logit != float("-inf")
    finally:
        C.llama_sampler_free(sampler)
