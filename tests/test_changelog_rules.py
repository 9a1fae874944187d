"""The rule labeler (the default teacher) and the STYLE checks, on contract cases."""
import pytest

from tests.conftest import ROOT
from tuneforge.tasks import get_task
from tuneforge.tasks.changelog_actions import kinds, labeler, schema, style

CASES = [
    # (text, hint, expected kind, expected rule)
    ("Fix heap buffer overflow in avifDecoderParse (CVE-2023-1234).", "Fixed", "security", 1),
    ("The `--foo` option has been removed; use `--bar` instead.", None, "breaking", 2),
    ("MCP tool search is now enabled by default, which reduces context usage.", "Performance", "breaking", 3),
    ("The `--foo` option is deprecated and will be removed in 3.0.", None, "deprecation", 4),
    ("chmod -R no longer exits with error status when encountering symlinks.", "Bug fixes", "fix", 5),
    ("Speed up `git status` on large repositories.", None, "performance", 6),
    ("Add `--json` output to the `list` command.", "Added", "feature", 7),
    ("Bug fixes and reliability improvements", None, "unknown", 8),
    ("Internal refactoring", None, "unknown", 8),
    ("Updated dependencies", None, "unknown", 8),
    ("Document the `core.fsync` configuration variable.", None, "docs", 9),
]


@pytest.mark.parametrize("text,hint,kind,rule", CASES)
def test_locked_rules(text, hint, kind, rule):
    assert kinds.rule_kind(text, hint) == (schema.Kind(kind), rule)


@pytest.mark.parametrize("text,hint,kind,rule", CASES)
def test_rule_labels_are_schema_valid_and_styled(text, hint, kind, rule):
    label, got_rule = labeler.rule_label(text, hint, "demo", "1.2.3")
    schema.ActionItem.model_validate(label)
    assert got_rule == rule
    assert style.style_problems(label, text) == [], label


def test_severity_rules():
    assert labeler.rule_severity(schema.Kind.security, 1, "remote code execution via crafted URL") == "critical"
    assert labeler.rule_severity(schema.Kind.security, 1, "fix XSS in the web UI") == "high"
    assert labeler.rule_severity(schema.Kind.breaking, 2, "removed --foo") == "high"
    assert labeler.rule_severity(schema.Kind.breaking, 3, "now on by default") == "medium"
    assert labeler.rule_severity(schema.Kind.deprecation, 4, "deprecated") == "medium"
    assert labeler.rule_severity(schema.Kind.fix, 5, "fix a crash on empty input") == "medium"
    assert labeler.rule_severity(schema.Kind.fix, 5, "fix silent data corruption when appending") == "critical"
    assert labeler.rule_severity(schema.Kind.fix, 5, "fix a typo in a label") == "low"
    assert labeler.rule_severity(schema.Kind.feature, 7, "add a flag") == "low"


def test_deadline_versions_and_dates():
    assert labeler.rule_deadline("X is deprecated and will be removed in 3.0.", schema.Kind.deprecation) == "3.0"
    assert labeler.rule_deadline("Support ends; removed by 2027-01-31.", schema.Kind.deprecation) == "2027-01-31"
    assert labeler.rule_deadline("Fixed in 3.0.", schema.Kind.fix) is None


def test_style_checks_catch_each_rule():
    text = "Add `--json` output to the `list` command."
    good, _ = labeler.rule_label(text, None, "demo", "1.0")
    assert style.style_problems(good, text) == []
    assert "style_subject_length" in style.style_problems({**good, "subject": "json"}, text)
    assert "style_subject_case" in style.style_problems({**good, "subject": "Json Output"}, text)
    assert "style_action_not_imperative" in style.style_problems(
        {**good, "action_text": "The `--json` flag is new."}, text)
    assert "style_action_too_long" in style.style_problems(
        {**good, "action_text": "Use `--json` " + "now " * 40 + "."}, text)
    assert "style_identifier_missing" in style.style_problems(
        {**good, "action_text": "Use the new output flag."}, text)
    assert "style_identifier_not_in_input" in style.style_problems(
        {**good, "action_text": "Use `--yaml` output."}, text)
    assert "style_action_not_one_sentence" in style.style_problems(
        {**good, "action_text": "Use `--json` output. It is nice."}, text)
    invented = {**good, "action_text": "Upgrade to demo 17.1 to use `--json` output."}
    assert "style_version_not_in_input" in style.style_problems(invented, text)
    assert "style_version_not_in_input" not in style.style_problems(invented, text, hint="demo 17.1")
    assert "style_version_not_in_input" in style.style_problems({**good, "deadline": "3.0"}, text)
    assert style.style_problems({**good, "action_text": "Use `--json` in the the `list` command."},
                                text) == ["style_repeated_word"]
    assert style.style_problems({**good, "subject": "json for for output"}, text) == ["style_repeated_word"]


@pytest.mark.parametrize("words, doubled", [
    ("Review the the latest demo release notes.", "the"),
    ("Consider Using using `x`.", "using"),
    ("long long portability", None),          # a content word may repeat
    ("basename -a a fix", None),              # "-a" is not the article
    ("Fix `the the` parsing.", None),         # inside a code span
    ("the fix for for-each-ref", None),       # "for-each-ref" is one word
    ("Use `x` the thing.", None),
])
def test_doubled_function_words(words, doubled):
    assert style.doubled_word(words) == doubled
    assert style.doubled_word(style.undouble(words)) is None


@pytest.mark.parametrize("text, hint, product, want", [
    # an unknown entry without a version: "Review the the latest demo release notes" until s31
    ("Bug fixes and reliability improvements", None, "demo",
     {"action_text": "Review the latest demo release notes before upgrading; this entry names no specific change."}),
    ("Updated the documentation.", None, "demo", {"subject": "demo documentation"}),
    ("Using the `--fast` flag no longer requires root.", "Added", "demo", {}),
    ("Support using PKCS#11 tokens.", "New features", "demo", {}),
])
def test_rule_labels_say_no_word_twice(text, hint, product, want):
    label, _ = labeler.rule_label(text, hint, product, None)
    assert style.style_problems(label, text, hint) == [], label
    assert {k: label[k] for k in want} == want, label


@pytest.mark.parametrize("text, hint, shown", [
    ("Fixed a crash when the config file is empty.", None, False),    # the heading's version is not input
    ("Fixed a crash when the config file is empty.", "demo 2.4.1", True),  # a Debian-style heading
    ("Fixed a crash in the 2.4.1 parser.", None, True),
])
def test_the_labeler_names_the_release_version_only_where_the_input_shows_it(text, hint, shown):
    label, _ = labeler.rule_label(text, hint, "demo", "2.4.1")
    assert ("demo 2.4.1" in label["action_text"]) is shown
    if not shown:
        assert "the latest demo release" in label["action_text"]
    assert style.style_problems(label, text, hint) == []


def test_prompt_and_label_rendering_round_trip():
    task = get_task("changelog-actions")
    label, _ = task.rule_label("Add `--json` output.", "Added", "demo", "1.0")
    rendered = task.render_label(label)
    assert list(task.parse_label(rendered).model_dump()) == schema.FIELD_ORDER
    assert task.parse_label(rendered).model_dump(mode="json") == label
    msgs = task.messages("Add `--json` output.", "Added", "demo")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Section: Added" in msgs[1]["content"]
    assert "Section" not in task.messages("x", None, "demo")[1]["content"]
    with pytest.raises(ValueError):
        task.parse_label("```json\n" + rendered + "\n```")


@pytest.mark.parametrize("text, hint", [
    ("Fixed a crash when opening empty files.", "Bug fixes"),
    ("Fixed a crash when opening empty files.", None),
    ("The --legacy flag is removed; use --modern.", "Changes"),
    ("Bug fixes and reliability improvements.", None),
])
def test_the_prompt_shows_the_rule_labelers_kind_and_severity_before_the_entry(text, hint):
    """One builder for train, eval and predict: the rules line is the labeler's reading of the
    same text, hint and product, and the entry stays the last line (tools read after 'Entry: ')."""
    task = get_task("changelog-actions")
    user = task.messages(text, hint, "demo")[1]["content"]
    label, _ = task.rule_label(text, hint, "demo", None)
    lines = user.splitlines()
    assert lines[-1] == f"Entry: {text}" and user.split("Entry: ", 1)[1] == text
    assert lines[-2] == f"Rules: {label['kind']}, {label['severity']}"


def test_rule_reading_is_rule_labels_kind_and_severity_on_every_gold_row():
    """The prompt's cheaper call agrees with the full labeler (evidence's candidate) everywhere."""
    from tuneforge.io import read_jsonl
    task = get_task("changelog-actions")
    rows = list(read_jsonl(ROOT / "data/gold/holdout.jsonl"))
    for row in rows:
        for hint in (row.get("hint"), None):
            kind, severity = labeler.rule_reading(row["text"], hint)
            label, _ = task.rule_label(row["text"], hint, row.get("product") or "", None)
            assert (kind.value, severity.value) == (label["kind"], label["severity"]), row["text"]
    assert len(rows) >= 300


def test_the_rules_line_follows_the_hint_shown():
    """A hint dropped or swapped (export's train rows, eval's hint ablation) changes the rules
    line as the labeler would: the line is computed from the prompt's own inputs."""
    task = get_task("changelog-actions")
    text = "Made the parser use less memory."
    with_hint = task.messages(text, "Bug fixes", "demo")[1]["content"]
    without = task.messages(text, None, "demo")[1]["content"]
    kinds_read = {task.rule_label(text, hint, "demo", None)[0]["kind"] for hint in ("Bug fixes", None)}
    assert kinds_read == {"fix", "performance"}
    assert with_hint.splitlines()[-2].startswith("Rules: fix, ")
    assert without.splitlines()[-2].startswith("Rules: performance, ")


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="changelog-actions, commit-messages"):
        get_task("tool-calls")


# General cues added after reading the labeler's errors on data/labeled/train.jsonl and the
# tuning part of the gold set (each case is written here, not copied from either file).
GENERAL_CASES = [
    # rule 1: "DoS" is denial of service, "DOS" the operating system
    ("Fix a DoS via deeply nested brackets.", None, "security", 1),
    ("Handle DOS drive letters in paths on native Windows builds.", None, "fix", 5),
    # rule 1: exposing data in logs is an exposure
    ("Stop exposing the request body in logs.", None, "security", 1),
    # rule 4 is about the product announcing a deprecation, not about moving off one
    ("Use non-deprecated `chown` syntax in the test helpers.", None, "unknown", 8),
    ("Replace deprecated `which` calls with `command -v`.", None, "unknown", 8),
    ("Use of `--old` in scripts is not deprecated by this change.", "Deprecation notices", "unknown", 8),
    # rule 4 over rule 2: renamed, but the old name still works
    ("`--html-ext` has been renamed to `--adjust-ext`; `--html-ext` is still accepted but deprecated.",
     None, "deprecation", 4),
    # rule 2: something that used to work is now rejected
    ("An empty pattern is now an error.", None, "breaking", 2),
    ("No longer ship the `foo.tab` data files.", None, "breaking", 2),
    # rule 3: a changed default, framed as an improvement
    ("The default algorithm has been adjusted to give better output at some CPU cost.",
     "Performance", "breaking", 3),
    # rule 9: translations and help text are messages
    ("Updated translations.", None, "docs", 9),
    ("Fix the help message of `frob`: `--index` takes a value.", None, "docs", 9),
    # rule 5 over rule 9: a warning that was emitted wrongly
    ("Silence a warning incorrectly emitted for quoted paths.", None, "fix", 5),
    # rule 8: packaging chores under a path prefix or a packaging heading
    ("debian/rules: Add a target to regenerate the docs.", None, "unknown", 8),
    ("Document Rules-Requires-Root.", "d/control", "unknown", 8),
    ("Make sure the generated dependency file is stably sorted.",
     "Performance, Internal Implementation, Development Support etc.", "unknown", 8),
    ("Define the data structure for bundle lists.",
     "Performance, Internal Implementation, Development Support etc.", "unknown", 8),
    ("Mostly bug fixes.", None, "unknown", 8),
    ("See README.amiga for details.", None, "unknown", 8),
    ("Rename binaries", None, "unknown", 8),
    # rules 5-7 cues
    ("Protect against division by zero in the hash table.", None, "fix", 5),
    ("SuperRes support", None, "feature", 7),
    ("gzip now restores timestamps to the microsecond.", None, "feature", 7),
    ("Added non-square partitioning optimizations", None, "performance", 6),
    ("The COFF parser is broken on VMS; replaced with a hack that is faster on Alphas.", None, "fix", 5),
]


@pytest.mark.parametrize("text,hint,kind,rule", GENERAL_CASES)
def test_general_cues(text, hint, kind, rule):
    assert kinds.rule_kind(text, hint) == (schema.Kind(kind), rule)
    label, _ = labeler.rule_label(text, hint, "demo", "1.2.3")
    assert style.style_problems(label, text) == [], label


def test_identifiers_read_each_quoting_style():
    assert style.identifiers("Use `--json` and `list`.") == ["--json", "list"]
    # GNU quotes: a backtick closed by an apostrophe, never paired with the next backtick
    assert style.identifiers("Use the `--limit-rate' option, e.g. `wget --limit-rate=15k URL'.") == [
        "--limit-rate", "wget --limit-rate=15k URL"]
    assert style.identifiers("`L' command is deprecated.") == ["L"]
    # reST inline literals, and a code span holding an apostrophe
    assert style.identifiers("new ``--trusted-host`` flag (``pip install --trusted-host x``)") == [
        "--trusted-host", "pip install --trusted-host x"]
    assert style.identifiers("Use `git`'s `don't` and ``<base href='...'>``") == ["git", "don't", "<base href='...'>"]
    # reST roles: code roles name an identifier (target, without ~), cross-references do not
    assert style.identifiers("See :func:`~pkg.mod.frob` and :meth:`Frob <pkg.Frob.run>`.") == [
        "pkg.mod.frob", "pkg.Frob.run"]
    assert style.identifiers("by :user:`encukou`, see :ref:`install`, :issue:`123`, :doc:`x`") == []
    # reST links and TeX-style quotations are not code; bug numbers are not either
    assert style.identifiers("(`#9086 <https://github.com/pypa/pip/issues/9086>`_) and `docs`_") == []
    assert style.identifiers("The pseudo-op ``.mri 1'' switches mode; bug `751956`.") == []


def test_style_identifier_check_with_gnu_quotes_and_rest_links():
    text = "You can limit the rate with the `--limit-rate' option. For example, `wget --limit-rate=15k URL'."
    label, _ = labeler.rule_label(text, None, "wget", "1.10")
    assert "`--limit-rate`" in label["action_text"]
    assert style.style_problems(label, text) == []
    ok = {**label, "action_text": "Use `--limit-rate` to cap the download rate."}
    assert style.style_problems(ok, text) == []
    linked = "Speed up Git URL installs. (`#9086 <https://github.com/pypa/pip/issues/9086>`_)"
    bad = {**label, "action_text": "Upgrade pip as described in `#9086 <https://github.com/pypa/pip/issues/9086>`."}
    assert style.style_problems(bad, linked) == ["style_identifier_not_in_input"]


def test_unknown_action_names_the_entry_identifiers():
    text = "The `bfd' library has been updated."
    label, rule = labeler.rule_label(text, None, "binutils", "2.2")
    assert rule == 8 and "`bfd`" in label["action_text"]
    assert style.style_problems(label, text) == []


@pytest.mark.parametrize("text,cue", [
    ("Bug fixes and reliability improvements", True),           # content-free
    ("Updated dependencies", True),                             # the contract's internal example
    ("debian/rules: Remove obsolete dh_strip override", True),  # packaging only
    ("Bump Standards-Version to 4.6.2", True),
    ("Drop pwg-raster-attributes.patch", False),                # rule 8 because nothing matched
    ("The widget sits on the left now", False),
])
def test_unknown_cue_separates_rule_8_with_a_reason_from_the_fallback(text, cue):
    """Both are rule 8; only the first kind says in the entry why it is unknown, so only
    it is training data (score sends the fallback to review)."""
    assert kinds.rule_kind(text, None) == (schema.Kind.unknown, 8)
    assert kinds.unknown_cue(text, None) is cue


def test_score_trains_on_internal_unknowns_and_reviews_the_fallback():
    from stages.score import score_record
    from tuneforge.records import CandidateLabel, EvidenceRecord, LabelSource, Provenance

    task = get_task("changelog-actions")
    cfg = {"hint_disagreement": "needs_human_review", "unknown_without_cue": "needs_human_review",
           "scorer_version": "t"}

    def scored(text):
        label, rule = task.rule_label(text, None, "demo", "1.0")
        rec = EvidenceRecord(id="x", task=task.name, text=text, hint=None, product="demo",
                             version="1.0", format="markdown_bullets",
                             provenance=Provenance(source_file="f", line=1, sig_hash="s"),
                             candidates=[CandidateLabel(source=LabelSource.rules, label=label, rule=rule)])
        return score_record(task, rec, cfg)

    internal = scored("debian/rules: Remove obsolete dh_strip override")
    assert internal.category.value == "accepted" and "unknown_without_cue" not in internal.reasons
    fallback = scored("The widget sits on the left now")
    assert fallback.category.value == "needs_human_review" and "unknown_without_cue" in fallback.reasons


def test_score_style_checks_hand_labels_and_keeps_one_that_breaks_style_out_of_sft():
    """A hand label skips the rule checks (it outranks them) but not STYLE: one naming a
    version the input does not show is partially accepted, its code named; a clean one is
    accepted."""
    from stages.score import score_record
    from tuneforge.records import CandidateLabel, EvidenceRecord, LabelSource, Provenance

    task = get_task("changelog-actions")
    cfg = {"hint_disagreement": "needs_human_review", "unknown_without_cue": "needs_human_review",
           "scorer_version": "t"}
    text = "Fix a crash when the config file is empty"

    def scored(action_text):
        label = {"kind": "fix", "severity": "medium", "subject": "empty config crash",
                 "action_text": action_text, "deadline": None, "tags": ["demo"]}
        rec = EvidenceRecord(id="x", task=task.name, text=text, hint=None, product="demo",
                             version="1.0", format="markdown_bullets",
                             provenance=Provenance(source_file="f", line=1, sig_hash="s"),
                             candidates=[CandidateLabel(source=LabelSource.human, label=label)])
        return score_record(task, rec, cfg)

    clean = scored("Upgrade demo to stop crashing on an empty config file.")
    assert clean.category.value == "accepted" and clean.reasons == []
    versioned = scored("Upgrade demo to 2.4.1 to stop crashing on an empty config file.")
    assert versioned.category.value == "partially_accepted"
    assert versioned.reasons == ["style_version_not_in_input"]


@pytest.mark.parametrize("path", ["data/gold/holdout.jsonl", "data/labeled/train.jsonl"])
def test_every_changelog_hand_label_passes_style_and_names_its_contract(path):
    """The committed hand labels obey STYLE (the scorer would keep a breaking one out of
    SFT) and each says which contract version it was made or last revised under."""
    import json
    from pathlib import Path

    from tuneforge.review import CONTRACT

    rows = [json.loads(line) for line in (Path(__file__).parents[1] / path).read_text().splitlines()]
    broken = {(i, tuple(p)) for i, r in enumerate(rows, 1)
              if (p := style.style_problems(r["label"], r["text"], r["hint"]))}
    assert not broken, f"{path}: rows (line, codes) that break STYLE: {sorted(broken)[:10]}"
    unnamed = [i for i, r in enumerate(rows, 1) if not CONTRACT.match(r.get("contract") or "")]
    assert not unnamed, f"{path}: rows with no contract version: lines {unnamed[:10]}"


def test_style_codes_match_what_the_checks_give_and_style_md():
    """One list of codes: STYLE.md documents them, style_problems gives them, eval counts
    each of them (0 included) from style.STYLE_CODES."""
    import inspect
    import re
    from pathlib import Path

    given = re.findall(r'problems\.append\("(style_\w+)"\)', inspect.getsource(style.style_problems))
    documented = re.findall(r"`(style_\w+)`", (Path(__file__).parents[1] / "STYLE.md").read_text())
    assert sorted(set(given)) == sorted(style.STYLE_CODES)
    assert list(dict.fromkeys(documented)) == list(style.STYLE_CODES)


def test_an_escaped_backtick_opens_no_code_span():
    r"""Markdown's \` is a literal backtick: python3-jwt's entry (a stray \` after
    `jwt/contrib/algorithms`) made the sentence after it an identifier every label had to quote.
    A code span holding a backslash still is one."""
    garbled = ("Include jwt/contrib' and jwt/contrib/algorithms\\` in setup.py so that they will "
               "actually be included when installing. `882524d <https://github.com/jpadilla/pyjwt/"
               "commit/882524d>`__")
    assert style.identifiers(garbled) == []
    assert style.identifiers("fix regular expression to detect `/` and `\\`") == ["/", "\\"]
    label = {"kind": "fix", "severity": "low", "subject": "packaged jwt contrib modules",
             "action_text": "Upgrade to get the jwt contrib modules installed.", "deadline": None,
             "tags": ["python3-jwt", "build"]}
    assert style.style_problems(label, garbled) == []


def test_style_md_lists_the_verbs_the_scorer_accepts():
    """Annotators label from STYLE.md: an action's first word must be one of the verbs it lists,
    the scorer's own set (session 32's annotators found the set by trial and error: the page
    gave ten and an ellipsis)."""
    import re
    from pathlib import Path

    page = (Path(__file__).parents[1] / "STYLE.md").read_text()
    listed = re.search(r"imperative verb addressed to the user or operator, one of: (.*?) \(`style\.IMPERATIVE_VERBS`",
                       page, re.S)
    assert listed, "STYLE.md no longer lists the accepted verbs"
    assert {w.strip().lower() for w in listed.group(1).split(",")} == style.IMPERATIVE_VERBS


@pytest.mark.parametrize("text, kind", [
    ("Prevent double free if the window option remain-on-exit is set.", "security"),
    ("Fix a heap over-read in the tag parser", "security"),
    ("Fix out-of-bounds access when the header is truncated", "security"),
    ("diff3 no longer malfunctions due to use-after-free", "security"),
    ("Fixed a couple of memory leaks in the test suite.", "fix"),
    ("Fix NULL dereference in idn2_register_u8()", "fix"),
])
def test_memory_safety_bugs_are_security_and_leaks_and_null_crashes_are_fixes(text, kind):
    """Contract v6, rule 1 (decided 2026-11-29): the memory-safety bugs it names are security
    without a CVE; a leak or a NULL-pointer crash with no attacker in view is a fix."""
    assert kinds.rule_kind(text, None)[0].value == kind


def test_topic_does_not_end_on_a_function_word():
    """A topic cut at four words ended on "of" / "the" in 269 labels: "Consider using wasm32
    ELF conversion of from the latest binutils release"."""
    assert labeler._topic("Support wasm32 ELF conversion of object files.") == ["wasm32", "ELF", "conversion"]
    label, _ = labeler.rule_label("Support GPG signatures using the keyring.", None, "demo", None)
    assert label["subject"] == "GPG signatures", label
