"""The eval answer memo: decodes only what it has not seen; any key part changes -> miss."""
from tuneforge.predcache import PredictionCache


def test_decodes_only_misses_and_keys_on_model(tmp_path):
    calls = []

    def decode(prompts):
        calls.append(list(prompts))
        return [f"answer to {p}" for p in prompts]

    cache = PredictionCache(tmp_path / "memo")
    model = {"sha256": "a" * 64, "max_tokens": 160}
    assert cache.answers(model, ["p1", "p2"], decode) == ["answer to p1", "answer to p2"]
    assert cache.answers(model, ["p2", "p3", "p1"], decode) == [
        "answer to p2", "answer to p3", "answer to p1"]
    assert calls == [["p1", "p2"], ["p3"]]
    assert (cache.hits, cache.misses) == (2, 3)
    # another model file or decoder setting is another key
    cache.answers({**model, "sha256": "b" * 64}, ["p1"], decode)
    cache.answers({**model, "max_tokens": 8}, ["p1"], decode)
    assert calls[2:] == [["p1"], ["p1"]]


def test_off_decodes_everything(tmp_path):
    calls = []
    cache = PredictionCache(None)
    for _ in range(2):
        cache.answers({"sha256": "a"}, ["p"], lambda ps: calls.append(ps) or ["x"] * len(ps))
    assert len(calls) == 2 and not list(tmp_path.iterdir())
