"""The commit-messages task: one staged diff -> one strict-JSON commit message.

Contract: shared/task/commit-messages.md, restated in SCHEMA.md and STYLE.md beside this file.
schema.py and prompt.py (which holds the diff reader) are all that model-side code imports; the message normaliser
(normalise.py), the rule labeler (labeler.py), the STYLE checks (style.py), junk injection
(junk.py) and the eval figures (metrics.py) load on first use through `Lazy`.

A record's `text` is the staged diff; its `hint` is the author's message, the source of the
label and never part of the prompt; its `product` is the source package (or repository).
"""
from __future__ import annotations

from tuneforge.tasks import Lazy, Task, register
from tuneforge.tasks.commit_messages import prompt, schema

TASK_NAME = "commit-messages"

TASK = register(Task(
    name=TASK_NAME,
    output_model=schema.CommitMessage,
    system_prompt=prompt.SYSTEM_PROMPT,
    render_user=prompt.render_user,
    render_label=schema.render_label,
    parse_label=schema.parse_label,
    rule_label=Lazy(f"{__name__}.labeler", "rule_label"),
    style_problems=Lazy(f"{__name__}.style", "style_problems"),
    style_codes=Lazy(f"{__name__}.style", "STYLE_CODES").resolve,
    is_content_free=lambda text: False,  # a diff always shows what changed
    # Only read for the abstain rule, which this labeler never returns (see abstain_rule).
    unknown_cue=lambda text, hint: True,
    hint_class=lambda hint: None,  # the author's message is the label source, not a hint the model sees
    label_class=lambda label: label["type"],
    with_class=lambda label, kind: dict(label, type=kind),
    classes=tuple(t.value for t in schema.CommitType),
    firm_classes=frozenset(),
    # There is no "nothing to act on" class: every diff changes something. chore (rule 11, what
    # fits nothing else) stands in where a class is required, and rule 0, a number the labeler
    # never returns, keeps the scorer's unknown-without-cue check from ever firing.
    abstain_class=schema.CommitType.chore.value,
    abstain_rule=0,
    content_free_examples=lambda: (),
    class_field="type",
    second_field="breaking",
    source_formats=("format_patch", "dep3"),
    holdout_by_product=True,
    augment=Lazy(f"{__name__}.junk", "augment"),
    eval_figures=Lazy(f"{__name__}.metrics", "eval_figures"),
    formats={"git": schema.format_git},
    hint_in_prompt=False,  # the hint is the author's message: the label's source
    input_kind="document",  # predict reads all of stdin (a diff) as one input
    narrow_schema=schema.for_diff,  # `ignore` is the diff's junk paths, the contract's list
    answer_check=Lazy(f"{__name__}.style", "copy_check"),  # no name the diff does not show
    advice=schema.junk_note,  # --format git: the junk paths to unstage, on stderr
    unknown_fields=Lazy(f"{__name__}.labeler", "unknown_fields"),  # an author who names no component
    card_notes=(
        "Subjects, bodies and scopes in training come from the changes' authors (Debian patch "
        "headers), normalised by one function; type and breaking come from a rule labeler over the "
        "message and the paths (the gold holdout is hand-labeled): the model learns the labeler's "
        "habits for those two. An author names a scope only as a `component: ` prefix; where none "
        "did, the scope's value is left out of the training loss rather than taught as null.",
        "It sees a bounded view of the diff (paths with +/- counts, then whole hunks to a budget), never "
        "the author's message, and left to itself it sometimes names what the diff does not show, mostly "
        "a near copy of a name it does (`curl_bump_headersize` for `Curl_bump_headersize`). tuneforge's "
        "decoder (predict, eval, the commit hook) refuses such a name token by token and takes the model's "
        "next choice (`steered_rate`: the share of answers where it had to); llama_cpp.server (`make serve`) "
        "and Ollama cannot, so their answers may name one.",
        "`ignore` is not the model's choice: decoding (eval, predict, and Ollama given `predict --schema`'s "
        "schema as `format`) forces it to the diff's junk paths by the contract's list (editor swap files, "
        "`.DS_Store`, `__pycache__/`, top-level build output, `node_modules/`, `.env`, key files). A file "
        "holding a secret under any other name is not caught. The `.env` hunks it was trained on held a "
        "planted secret, redacted before training.",
    ),
))
