"""eval's answer memo keys a GGUF on its behaviour (gguf_tools.behaviour_sha256: every byte but
general.description, convert's provenance), so a file that differs only in provenance answers
from the memo, and any other difference decodes again."""
from __future__ import annotations

from tuneforge.decode import Settings, gguf_key
from tuneforge.gguf_tools import behaviour_sha256, read_metadata
from tuneforge.io import sha256_file

from .tiny_gguf import write_tiny_gguf

SETTINGS = Settings(max_tokens=16, n_ctx=256, n_threads=1)


def test_provenance_alone_leaves_the_behaviour_digest_and_the_memo_key_alone(tmp_path):
    a = write_tiny_gguf(tmp_path / "a.gguf", description='{"tuneforge": {"params": 1}}')
    # a longer description: the alignment padding before the tensor data changes length too
    b = write_tiny_gguf(tmp_path / "b.gguf", description='{"tuneforge": {"params": 2, "more": "' + "x" * 77 + '"}}')
    assert sha256_file(a) != sha256_file(b)
    assert read_metadata(a, ["general.description"]) != read_metadata(b, ["general.description"])
    assert behaviour_sha256(a) == behaviour_sha256(b)
    assert gguf_key(a, SETTINGS) == gguf_key(b, SETTINGS)


def test_any_other_difference_changes_it(tmp_path):
    base = behaviour_sha256(write_tiny_gguf(tmp_path / "a.gguf", description="p"))
    others = {
        "weights": write_tiny_gguf(tmp_path / "w.gguf", description="p", seed=1),
        "another metadata entry": write_tiny_gguf(tmp_path / "n.gguf", description="p", name="tiny-other"),
        "no description": write_tiny_gguf(tmp_path / "d.gguf"),  # then llama.cpp reads the same bytes...
    }
    digests = {what: behaviour_sha256(path) for what, path in others.items()}
    assert digests.pop("no description") == base  # ...so the digest is the same: only provenance differs
    assert all(d != base for d in digests.values()), digests
    # one tensor byte flipped in place
    flipped = tmp_path / "f.gguf"
    data = bytearray((tmp_path / "a.gguf").read_bytes())
    data[-5] ^= 0x01
    flipped.write_bytes(bytes(data))
    assert behaviour_sha256(flipped) != base
    assert gguf_key(flipped, SETTINGS) != gguf_key(tmp_path / "a.gguf", SETTINGS)
