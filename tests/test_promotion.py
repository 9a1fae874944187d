"""gates.decide: the smallest passing GGUF is promoted; a tie in size (a K type with and without
the importance matrix: the same tensor bytes) goes to the lower fidelity KL mean, then by name."""
from __future__ import annotations

import pytest

from tuneforge import gates
from tuneforge.verdict import FileHash

TYPES = ["Q8_0", "Q4_K_M", "Q4_K_M-imat"]
# bytes: the pair with and without the matrix differs by the matrix's metadata
SIZES = {"Q8_0": 144_811_936, "Q4_K_M": 105_455_008, "Q4_K_M-imat": 105_455_200}


def promoted(monkeypatch, kl_mean, failures=None, size_bytes=None):
    monkeypatch.setattr(gates, "gate", lambda *a, **k: [])  # every accuracy gate passes
    metrics = {k: {} for k in TYPES} | {"f16": {"conversion_parity": 1.0}}
    ggufs = {k: FileHash(path=f"m-{k}.gguf", sha256="0" * 64) for k in TYPES}
    return gates.decide(metrics, {k: {} for k in TYPES}, TYPES, size_bytes or SIZES,
                        {"parity_model": "f16", "gates": {}},
                        ggufs, failures=failures, kl_mean=kl_mean)["promoted"]


@pytest.mark.parametrize(("kl_mean", "want"), [
    ({"Q8_0": 0.002, "Q4_K_M": 0.031, "Q4_K_M-imat": 0.019}, "Q4_K_M-imat"),  # closer with the matrix
    ({"Q8_0": 0.002, "Q4_K_M": 0.019, "Q4_K_M-imat": 0.031}, "Q4_K_M"),
    (None, "Q4_K_M"),  # no fidelity figures: by name
])
def test_a_tie_in_size_goes_to_the_closer_model(monkeypatch, kl_mean, want):
    assert promoted(monkeypatch, kl_mean) == want


def test_size_comes_before_closeness(monkeypatch):
    kl = {"Q8_0": 0.001, "Q4_K_M": 0.05, "Q4_K_M-imat": 0.04}
    assert promoted(monkeypatch, kl) == "Q4_K_M-imat"
    assert promoted(monkeypatch, kl, failures={"Q4_K_M-imat": ["fidelity KL"], "Q4_K_M": ["kind"]}) == "Q8_0"


def test_bytes_decide_to_three_figures(monkeypatch):
    kl = {"Q8_0": 0.001, "Q4_K_M": 0.03, "Q4_K_M-imat": 0.02}
    # the real pair: the matrix's metadata adds 192 bytes to 105 MB, still a tie -> the closer one
    assert promoted(monkeypatch, kl, size_bytes={"Q8_0": 144_811_936, "Q4_K_M": 105_455_008,
                                                  "Q4_K_M-imat": 105_455_200}) == "Q4_K_M-imat"
    # tiny models: all three round to 0.2 MB, but their bytes say which is smallest
    assert promoted(monkeypatch, kl, size_bytes={"Q8_0": 231_000, "Q4_K_M": 161_000,
                                                  "Q4_K_M-imat": 178_000}) == "Q4_K_M"


def test_a_candidate_that_fails_its_confirmation_is_failed_and_the_next_one_tried(monkeypatch):
    """eval.confirm_rows: the smallest passing GGUF is gated again on more gold rows before it is
    promoted (v18's IQ4_XS-imat passed 40 rows and looped 4 times on 240); one that fails there is
    failed with its reasons, and the next smallest tried; none tried past the one promoted."""
    monkeypatch.setattr(gates, "gate", lambda *a, **k: [])
    metrics = {k: {} for k in TYPES} | {"f16": {"conversion_parity": 1.0}}
    ggufs = {k: FileHash(path=f"m-{k}.gguf", sha256="0" * 64) for k in TYPES}
    tried: list[str] = []
    loops = {"Q4_K_M-imat": ["on 240 gold rows (eval.confirm_rows): closed_by_decoder 4 > 0"]}

    def confirm(key: str) -> list[str]:
        tried.append(key)
        return loops.get(key, [])

    out = gates.decide(metrics, {k: {} for k in TYPES}, TYPES, SIZES, {"parity_model": "f16", "gates": {}},
                       ggufs, kl_mean={"Q8_0": 0.001, "Q4_K_M": 0.03, "Q4_K_M-imat": 0.02}, confirm=confirm)
    assert tried == ["Q4_K_M-imat", "Q4_K_M"]  # smallest (and closer) first; Q8_0 never needed
    assert out["promoted"] == "Q4_K_M" and out["release"] == "pass"
    assert out["models"]["Q4_K_M-imat"].verdict == "fail"
    assert out["models"]["Q4_K_M-imat"].failed == loops["Q4_K_M-imat"]
    assert metrics["Q4_K_M-imat"]["passed_gates"] is False and metrics["Q4_K_M"]["passed_gates"] is True
    # every candidate failing its confirmation: nothing is promoted, the release fails
    loops.update({k: ["x"] for k in TYPES})
    out = gates.decide({k: {} for k in TYPES} | {"f16": {"conversion_parity": 1.0}}, {k: {} for k in TYPES}, TYPES,
                       SIZES, {"parity_model": "f16", "gates": {}}, ggufs, confirm=confirm)
    assert out["promoted"] is None and out["release"] == "fail"


def test_the_verdict_says_which_passes_were_confirmed(monkeypatch):
    """A GGUF that passed eval's sample but was never tried on confirm_rows (a smaller one was
    promoted first) is a pass on the sample alone: `confirmed` null, not true as the promoted
    one's, nor false as a candidate's that failed there."""
    monkeypatch.setattr(gates, "gate", lambda *a, **k: [])
    ggufs = {k: FileHash(path=f"m-{k}.gguf", sha256="0" * 64) for k in TYPES}
    out = gates.decide({k: {} for k in TYPES} | {"f16": {"conversion_parity": 1.0}}, {k: {} for k in TYPES}, TYPES,
                       SIZES, {"parity_model": "f16", "gates": {}}, ggufs,
                       kl_mean={"Q8_0": 0.001, "Q4_K_M": 0.03, "Q4_K_M-imat": 0.02},
                       confirm=lambda key: ["loops"] if key == "Q4_K_M-imat" else [])
    assert {k: (v.verdict, v.confirmed) for k, v in out["models"].items()} == {
        "Q4_K_M-imat": ("fail", False), "Q4_K_M": ("pass", True), "Q8_0": ("pass", None)}


def test_a_control_is_failed_with_its_reason_and_never_tried(monkeypatch):
    """eval.fidelity_only: a control (Q4_K_M beside Q4_K_M-imat) is never decoded, so no gate
    ran on it: it fails naming why, with any KL bound it is over, and is never a candidate."""
    monkeypatch.setattr(gates, "gate", lambda *a, **k: [])
    decoded = ["Q8_0", "Q4_K_M-imat"]
    metrics = {k: {} for k in decoded} | {"f16": {"conversion_parity": 1.0}}
    ggufs = {k: FileHash(path=f"m-{k}.gguf", sha256="0" * 64) for k in TYPES}
    tried: list[str] = []
    out = gates.decide(metrics, {k: {} for k in decoded}, decoded, SIZES, {"parity_model": "f16", "gates": {}},
                       ggufs, failures={"Q4_K_M": ["fidelity KL mean 0.1 (bound 0.06)"]},
                       kl_mean={"Q8_0": 0.002, "Q4_K_M": 0.001, "Q4_K_M-imat": 0.02},
                       confirm=lambda k: tried.append(k) or [], controls=["Q4_K_M"])
    control = out["models"]["Q4_K_M"]
    assert control.verdict == "fail" and control.confirmed is None
    assert control.failed == [gates.NOT_DECODED, "fidelity KL mean 0.1 (bound 0.06)"]
    assert out["promoted"] == "Q4_K_M-imat" and tried == ["Q4_K_M-imat"] and "Q4_K_M" not in metrics


@pytest.mark.parametrize(("fidelity_only", "error"), [
    (["Q4_K_M"], None),
    (["Q5_K_M"], r"eval.fidelity_only \['Q5_K_M'\] are not in quantize.types"),
    (["Q8_0"], r"eval.fidelity_only \['Q8_0'\]: eval decodes these"),
    (["Q4_K_M", "Q4_K_M-imat"], None),  # eval.report_model (decoded, never a control) is always left
])
def test_fidelity_only_names_built_types_eval_does_not_decode(fidelity_only, error):
    cfg = {"parity_model": "f16", "report_model": "Q8_0", "ablation_models": [], "fidelity_only": fidelity_only}
    if error is None:
        gates.check_models(cfg, TYPES, "f16")
        return
    with pytest.raises(ValueError, match=error):
        gates.check_models(cfg, TYPES, "f16")

