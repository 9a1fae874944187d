"""Gold decontamination (issue 17): near-duplicates of a gold entry (a middle word edited,
words inserted or deleted, short entries) never reach SFT, synthetic rows included, and
reports/changelog-actions/leakage.json names every gold entry's nearest SFT row."""
import json
import random

import yaml

from tuneforge.io import read_jsonl
from tuneforge.tasks import get_task
from tuneforge.text import content_key

# (source entry, gold entry): each gold entry is a small edit of a source entry
PLANTED = {
    # (a) the real miss: tar's NEWS against gzip's gold row (3-shingle Jaccard 0.62)
    "tar": ("The manual is now distributed under the GNU Free Documentation License.",
            "The manual is now distributed under the terms of the GNU Free Documentation License."),
    # (b) a middle word of a 16-word entry edited (Jaccard 0.65)
    "middle": ("The tar command no longer crashes when an archive member name contains a trailing slash character.",
               "The tar command no longer crashes when an extracted member name contains a trailing slash character."),
    # (c) two words inserted, two words deleted
    "insert": ("Extraction now restores modification times of directories after their files are written.",
               "Extraction now restores the original modification times of directories after their files are written."),
    "delete": ("The --exclude option now accepts shell wildcards and matches them against every member name.",
               "The --exclude option accepts wildcards and matches them against every member name."),
    # (d) short entries, one word edited
    "short": ("Fixed a hang when reading pipes.", "Fixed a crash when reading pipes."),
    "short5": ("Warn about unreadable sparse files.", "Warn about unreadable special files."),
}
# share words with a gold entry but say something else: must stay in the exports
CONTROLS = ["The manual now documents the --transform option with three worked examples.",
            "Fixed a memory leak in the gzip compression filter when the input was empty.",
            "Sparse files are now detected on file systems that report holes.",
            "Fixed a crash when reading from named pipes on slow disks."]  # 0.55 against "short"


def news(entries: list[str]) -> str:
    body = "".join(f"  {e}\n\n" for e in entries)
    return ("GNU tar NEWS                                    -*- outline -*-\n\n"
            "* Noteworthy changes in release 1.13 (1999-07-08) [stable]\n\n"
            f"** Changes in behavior\n\n{body}")


def gold_row(text: str) -> dict:
    return {"text": text, "hint": None, "product": "tar", "version": "1.13", "rule": 7,
            "label": {"kind": "fix", "severity": "low", "subject": "planted", "action_text": "Upgrade tar.",
                      "deadline": None, "tags": ["tar"]}}


def setup(workdir, synthetic_gold: str | None = None, unknown_augment: int = 0) -> list[dict]:
    (workdir / "snapshot/tar").mkdir(parents=True)
    (workdir / "snapshot/tar/NEWS").write_text(news([s for s, _ in PLANTED.values()] + CONTROLS))
    gold = [json.loads(x) for x in (workdir / "data/gold/holdout.jsonl").read_text().splitlines()]
    gold += [gold_row(g) for _, g in PLANTED.values()]
    if synthetic_gold:
        gold.append(gold_row(synthetic_gold))
    (workdir / "data/gold/holdout.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold))
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["export"]["unknown_augment"] = unknown_augment
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return gold


def sft_texts(workdir) -> dict[str, str]:
    out = {}
    for split in ("train", "valid"):
        for row in read_jsonl(workdir / f"data/changelog-actions/exports/sft/{split}.jsonl"):
            out[row["id"]] = row["messages"][1]["content"].split("Entry: ", 1)[1]
    return out


def test_edited_inserted_deleted_and_short_near_duplicates_are_quarantined(workdir, run_pipeline):
    setup(workdir)
    run_pipeline()
    entries = {e["text"]: e["id"] for e in read_jsonl(workdir / "data/changelog-actions/entries.jsonl")}
    assert all(s in entries for s, _ in PLANTED.values()) and all(c in entries for c in CONTROLS)
    quarantined = {q["id"]: q for q in read_jsonl(workdir / "data/changelog-actions/quarantine/export.jsonl")}
    for name, (source, _) in PLANTED.items():
        q = quarantined.get(entries[source])
        assert q is not None and q["reason"] == "gold_overlap", (name, q)
    rag = workdir / "data/changelog-actions/exports/rag/rag.jsonl"
    texts = set(sft_texts(workdir).values()) | {r["text"] for r in read_jsonl(rag)}
    assert not texts & {s for s, _ in PLANTED.values()}
    for control in CONTROLS:  # no false positive on rows that merely share words with gold
        q = quarantined.get(entries[control])
        assert q is None or q["reason"] != "gold_overlap", (control, q)
    receipt = json.loads((workdir / "reports/changelog-actions/receipts/export.json").read_text())
    assert receipt["invariant_holds"]


def test_synthetic_rows_pass_the_same_filter(workdir, run_pipeline):
    task = get_task("changelog-actions")
    # a content-free example the augmentation draws, with one word edited, is a gold entry
    victim = next(t for t in task.content_free_examples() if len(t.split()) >= 5 and t.endswith("."))
    words = victim.split()
    words[2] = "tremendous"
    setup(workdir, synthetic_gold=" ".join(words), unknown_augment=3000)
    run_pipeline()
    assert victim not in set(sft_texts(workdir).values()), f"synthetic {victim!r} reached SFT"
    synthetic_q = [q for q in read_jsonl(workdir / "data/changelog-actions/quarantine/export.jsonl")
                   if q["source_file"] == "(unknown_augment)"]
    assert synthetic_q and all(q["reason"] == "gold_overlap" for q in synthetic_q)
    receipt = json.loads((workdir / "reports/changelog-actions/receipts/export.json").read_text())
    assert receipt["invariant_holds"]


def test_leakage_report_names_each_gold_entrys_nearest_sft_row(workdir, run_pipeline):
    gold = setup(workdir)
    run_pipeline()
    report = json.loads((workdir / "reports/changelog-actions/leakage.json").read_text())
    params = yaml.safe_load((workdir / "params.yaml").read_text())["export"]
    summary = report["summary"]
    assert summary["threshold"] == params["near_dup_threshold"]
    assert len(report["gold"]) == len(gold) == summary["gold"]
    assert {g["gold_sha256"] for g in report["gold"]} == {content_key(g["text"]) for g in gold}
    sft = sft_texts(workdir)
    kept = [g["nearest"]["similarity"] for g in report["gold"] if g["nearest"]]
    assert kept and max(kept) == summary["max_kept_similarity"] < summary["threshold"]
    for g in report["gold"]:
        if g["nearest"]:  # a real SFT row, scored at or above the floor
            assert g["nearest"]["id"] in sft and g["nearest"]["similarity"] >= summary["floor"]
        else:
            assert g["note"] == f"no SFT row scores {summary['floor']} or more against it"
    assert not {sft[g["nearest"]["id"]] for g in report["gold"] if g["nearest"]} & {s for s, _ in PLANTED.values()}
    short = next(g for g in report["gold"] if g["gold_sha256"] == content_key(PLANTED["short"][1]))
    assert sft[short["nearest"]["id"]] == CONTROLS[-1] and short["nearest"]["similarity"] == round(1 - 5 / 11, 4)
    q = list(read_jsonl(workdir / "data/changelog-actions/quarantine/export.jsonl"))
    removed = summary["removed"]
    assert sum(removed.values()) == sum(1 for r in q if r["reason"] == "gold_overlap")
    assert removed["near_edit"] + removed["near_contained"] >= len(PLANTED)


# ----------------------------------------------------------------------------- the measure

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tuneforge.decontam import GoldMatcher, levenshtein, words  # noqa: E402

SIXTEEN = "the tar command no longer crashes when an archive member name contains a trailing slash character"


def score(gold: str, text: str) -> float:
    found = GoldMatcher([gold], 0.01, 10).matches(text)
    return found[0].score if found else 0.0


def test_measure_survives_edits_insertions_deletions_and_short_entries():
    w = SIXTEEN.split()
    cases = {
        "tar": ("The manual is now distributed under the terms of the GNU Free Documentation License.",
                "The manual is now distributed under the GNU Free Documentation License."),
        "middle word": (SIXTEEN, " ".join(w[:8] + ["extracted"] + w[9:])),
        "two inserted": (SIXTEEN, " ".join(w[:8] + ["very", "long"] + w[8:])),
        "two deleted": (SIXTEEN, " ".join(w[:7] + w[9:])),
        "5 words, one edited": ("Warn about unreadable sparse files.", "Warn about unreadable special files."),
        "8 words, one deleted": ("Fix a crash in the tar archive reader.", "Fix a crash in tar archive reader."),
        "6 words, one inserted": ("Fixed a hang reading named pipes.", "Fixed a rare hang reading named pipes."),
        "gold inside a longer row": (
            "The manual is now distributed under the terms of the GNU Free Documentation License.",
            "The manual is now distributed under the terms of the GNU Free Documentation License without "
            "invariant sections or cover texts."),
    }
    got = {name: score(g, t) for name, (g, t) in cases.items()}
    assert all(s >= 0.75 for s in got.values()), got


def test_measure_leaves_unrelated_rows_alone():
    # pairs from the snapshot that character n-grams or short-entry containment confuse
    cases = [("Memory optimizations", "SIMD Optimizations"),
             ("Better documentation", "Documentation:"),
             ("libdbus 1.4 or later is now required.",
              "When using Python 3, version 3.4 or later is now required. Python 3.2 security support ended."),
             ("Update manpage translation", "Updated the German translation."),
             ("Fix out-of-bounds read.", "Fix a logic in mailinfo that miscomputed the length of a substring."),
             ("Fix watch file.", "Add a watch file")]
    got = {t: score(g, t) for g, t in cases}
    assert all(s < 0.75 for s in got.values()), got


def test_word_levenshtein_and_containment():
    assert levenshtein(words("a b c d"), words("a x c d")) == 1
    assert levenshtein(words("a b c"), words("a b c d e")) == 2
    assert levenshtein(words("b c"), words("a b c d"), free_ends=True) == 0
    assert levenshtein(words("b x"), words("a b c d"), free_ends=True) == 1


def dp_levenshtein(a: list[str], b: list[str], free_ends: bool = False) -> int:
    """The reference: the plain DP over a x b (what decontam ran before its bit-parallel form)."""
    prev = [0] * (len(b) + 1) if free_ends else list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return min(prev) if free_ends else prev[-1]


WORDS = st.lists(st.sampled_from("a b c d e f the of".split()), min_size=0, max_size=80)


@settings(max_examples=600, deadline=None)
@given(WORDS, WORDS, st.booleans())
def test_bit_parallel_levenshtein_equals_the_dp(a, b, free_ends):
    assert levenshtein(a, b, free_ends) == dp_levenshtein(a, b, free_ends)


def test_bit_parallel_levenshtein_equals_the_dp_on_long_diff_like_lists():
    """Hundreds of words on both sides (commit-messages' diffs): vectors of many machine words."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    for _ in range(12):
        a = rng.choices(vocab, k=rng.randint(150, 400))
        b = [w if rng.random() > 0.2 else rng.choice(vocab) for w in a[rng.randint(0, 50):]]
        b = b + rng.choices(vocab, k=rng.randint(0, 120))
        for free_ends in (False, True):
            assert levenshtein(a, b, free_ends) == dp_levenshtein(a, b, free_ends)


def brute(golds: list[list[str]], text: list[str], floor: float, min_contained: int) -> dict[int, float]:
    out = {}
    for i, g in enumerate(golds):
        if not g or not text:
            continue
        best = 1 - dp_levenshtein(g, text) / max(len(g), len(text))
        if len(g) >= min_contained and len(text) > len(g):
            best = max(best, 1 - dp_levenshtein(g, text, free_ends=True) / len(g))
        if best >= floor:
            out[i] = round(best, 9)
    return out


texts = st.lists(st.sampled_from("a b c d e f the of".split()), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6), texts, st.sampled_from([0.3, 0.5, 0.75]), st.integers(2, 6))
def test_the_index_finds_every_pair_a_full_comparison_finds(golds, text, floor, min_contained):
    matcher = GoldMatcher([" ".join(g) for g in golds], floor, min_contained)
    got = {m.gold: round(m.score, 9) for m in matcher.matches(" ".join(text))}
    assert got == brute(golds, text, floor, min_contained)


def test_bad_decontamination_params_name_file_line_and_key(workdir):
    import pytest

    from tuneforge import config
    text = (workdir / "params.yaml").read_text()
    for old, new, says in [("near_dup_threshold: 0.75", "near_dup_jaccard: 0.8", "replaced by export.near_dup_thr"),
                           ("near_dup_threshold: 0.75", "near_dup_threshold: 1.5", "less than or equal to 1"),
                           ("leakage_report_floor: 0.5", "leakage_report_floor: 0", "greater than 0"),
                           ("near_dup_min_contained_words: 10", "near_dup_min_contained_words: ten",
                            "valid integer.*'ten'")]:
        assert old in text
        bad = text.replace(old, new)
        (workdir / "params.yaml").write_text(bad)
        line = next(i for i, ln in enumerate(bad.splitlines(), 1) if new in ln)
        key = new.split(":")[0]
        with pytest.raises(config.ParamsError, match=f"params.yaml:{line}: export.{key}: .*{says}"):
            config.load(workdir / "params.yaml")
