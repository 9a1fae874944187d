"""eval's confirmation decodes a promotion candidate row by row and stops at the first row that
puts it over a count gate (a loop, a parse error): more rows can only raise a count, so the rest
could not change the verdict (stages/eval.py confirmation_answers)."""
from __future__ import annotations

from pathlib import Path

import pytest

import stages.eval as ev
from tuneforge.decode import Answer, DecoderPool, Settings
from tuneforge.names import eval_order
from tuneforge.scoring import labeler_answers, load_gold
from tuneforge.tasks import get_task

GATES = {"max_parse_errors": 0, "max_closed_by_decoder": 0}


def run(monkeypatch, loops=(), broken=(), gates=GATES, n=10, threads=1):
    """confirmation_answers over the first n changelog gold rows, the model answering as the rule
    labeler does, except a loop (closed by the decoder) at the rows in `loops` and an unparsable
    answer at those in `broken`; decoded `threads` rows at a time (one decoder per core)."""
    task = get_task("changelog-actions")
    rows = eval_order(load_gold(Path("data/gold/holdout.jsonl"), task), n)
    texts = labeler_answers(task, rows)
    asked: list[str] = []
    pools: set[int] = set()

    def decode(path, task, some, settings, **kw):
        # a row per decoder, so that decoding can stop after any few rows
        assert len(some) == threads or len(asked) + len(some) == len(rows)
        assert isinstance(kw["decoder"], DecoderPool) and len(kw["decoder"].decoders) == threads
        pools.add(id(kw["decoder"]))  # one pool, kept open from one few rows to the next
        out = []
        for row in some:
            i = len(asked)
            asked.append(row["text"])
            out.append(Answer("{not json" if i in broken else texts[i], closed_by_decoder=i in loops))
        return out

    monkeypatch.setattr(ev, "decode", decode)
    answers, over = ev.confirmation_answers(Path("m-Q4_K_M.gguf"), task, rows, Settings(160, 1024, threads), None,
                                            "0" * 64, gates, list(task.classes))
    assert [r["text"] for r in rows[: len(answers)]] == asked[: len(answers)]
    assert len(asked) - len(answers) < threads  # at most the rest of the last few rows decoded together
    assert len(pools) == 1
    return len(answers), over


def test_a_clean_candidate_is_decoded_on_every_row(monkeypatch):
    assert run(monkeypatch) == (10, [])


@pytest.mark.parametrize(("loops", "broken", "gates", "want"), [
    ({3, 6}, (), GATES, (4, ["closed_by_decoder 1 > 0"])),  # the first loop: rows 5-10 are never decoded
    ((), {2}, GATES, (3, ["parse_errors 1 > 0"])),
    ({3, 6}, (), {**GATES, "max_closed_by_decoder": 1}, (7, ["closed_by_decoder 2 > 1"])),  # one loop allowed
    ({3}, (), {**GATES, "max_closed_by_decoder": None}, (10, [])),  # no loop gate: nothing stops it
])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_decoding_stops_at_the_first_row_over_a_count_gate(monkeypatch, loops, broken, gates, want, threads):
    """The answers and the gates they went over are the same however many rows decode together."""
    assert run(monkeypatch, loops, broken, gates, threads=threads) == want
