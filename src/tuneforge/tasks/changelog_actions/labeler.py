"""The changelog-actions task: one change entry -> one strict-JSON action item.

Contract: shared/task/changelog-actions.md, restated in SCHEMA.md and STYLE.md.
This module holds the output model, the prompt, the deterministic rule labeler
(the default teacher) and the STYLE checks the scorer applies.
"""
from __future__ import annotations

import functools
import json
import re
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tuneforge.prefilter import compile_re

TASK_NAME = "changelog-actions"


class Kind(str, Enum):
    breaking = "breaking"
    deprecation = "deprecation"
    security = "security"
    feature = "feature"
    fix = "fix"
    performance = "performance"
    docs = "docs"
    unknown = "unknown"


# Kinds only the entry's own words decide (rule 10): a section hint neither gives them
# nor overrides them.
FIRM_KINDS = (Kind.security, Kind.breaking, Kind.deprecation)
# The labeler's "nothing a user must act on" (rule 8); its kind is Kind.unknown.
UNKNOWN_RULE = 8


class Severity(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


TAG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# Bounded, as every string of the output is (the decoding grammar follows the schema, and an
# unbounded field lets a looping model run to the token cap). The contract says only "a
# version or date"; up to 4 components matches what the labeler reads (DEADLINE_RE), and 8
# digits a part is twice the longest in the snapshot (4) and fits a YYYYMMDD date.
DEADLINE_PATTERN = r"^(v?[0-9]{1,8}(\.[0-9]{1,8}){0,3}|[0-9]{4}-[0-9]{2}-[0-9]{2})$"


class ActionItem(BaseModel):
    """The model's output. Structural rules live here (and so in the JSON Schema and
    the decoding grammar); word-level STYLE rules are checked by `style_problems`."""

    kind: Kind
    severity: Severity
    # Character bounds for the contract's word limits (subject 2-6 words, action_text <= 35
    # words, about 8 characters a word; the gold's longest are 43 and 186 characters). They
    # also bound the decoding grammar, so a looping answer closes.
    subject: str = Field(min_length=1, max_length=64)
    action_text: str = Field(min_length=1, max_length=280)
    deadline: str | None = Field(pattern=DEADLINE_PATTERN)
    # The contract gives tags no length: 40 characters is the gold's longest (27) with margin.
    tags: list[Annotated[str, StringConstraints(pattern=TAG_PATTERN, max_length=40)]] = Field(
        min_length=1, max_length=5, json_schema_extra={"uniqueItems": True})

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"description": "One action item for one changelog entry."},
    )


FIELD_ORDER = list(ActionItem.model_fields)

# ---------------------------------------------------------------- prompt

SYSTEM_PROMPT = (
    "Turn the changelog entry into one JSON action item with keys kind, severity, "
    "subject, action_text, deadline, tags. Output JSON only."
)


def render_user(text: str, hint: str | None, product: str | None) -> str:
    lines = []
    if product:
        lines.append(f"Product: {product}")
    if hint:
        lines.append(f"Section: {hint}")
    lines.append(f"Entry: {text}")
    return "\n".join(lines)


def render_label(label: dict) -> str:
    """Canonical assistant text: contract key order, compact, UTF-8 kept."""
    ordered = {k: label[k] for k in FIELD_ORDER}
    return json.dumps(ordered, ensure_ascii=False, separators=(", ", ": "))


def parse_label(text: str) -> ActionItem:
    """Strict: the whole text must be one JSON object valid against the schema."""
    return ActionItem.model_validate_json(text.strip(), strict=False)


# ---------------------------------------------------------------- rule labeler

# Code spans as the entries write them, tried left to right at each backtick:
#   :func:`name` (a reST role: code roles name an identifier, :ref:/:issue:/... do not),
#   ``literal`` (reST), `text <url>`_ / `name`_ (reST links: never identifiers),
#   `code` (Markdown), `--limit-rate' (GNU quotes: a backtick closed by an apostrophe);
#   ``text'' is a TeX-style quotation, not code.
IDENT_RE = compile_re(
    r":(?P<role>(?:[\w-]+:)?[\w-]+):`(?P<role_body>[^`\n]{1,120})`"
    r"|``(?P<quotation>[^`'\n]{1,120})''"
    r"|``(?P<literal>[^`\n]{1,120}?)``"
    r"|`(?P<link>[^`\n]{0,120})`__?(?!\w)"
    r"|`(?P<code>[^`'\n]{1,120})`"
    r"|`(?P<gnu>[^`'\n]{1,120})'(?=[\s,;:)!?]|\.(?:\s|$)|$)"
    r"|`(?P<code_apos>[^`\n]{1,120})`"
)
CODE_ROLES = {"func", "meth", "class", "mod", "attr", "data", "const", "exc", "obj", "envvar",
              "option", "program", "command", "file", "samp", "kbd", "code", "macro", "member",
              "type", "var", "struct", "enum", "enumerator", "function", "confval", "setting"}
ROLE_TARGET_RE = compile_re(r"<([^<>]+)>\s*$")
CVE_RE = compile_re(r"\bCVE-\d{4}-\d{4,}\b", re.I)

CONTENT_FREE_RE = compile_re(
    r"^(?:[-*\s]*)(?:"
    r"(?:(?:mostly|mainly|only|just) )?(?:various |minor |misc(?:ellaneous)? |small |several |many |other |general )?"
    r"(?:bug ?fix(?:es)?"
    r"|(?:(?:bug|warning|build|compiler|test|typo)s? (?:and (?:bug|warning|build|compiler|test|typo)s? )?)?fixes"
    r"|improvements?|cleanups?|clean-?ups?|changes|updates|tweaks|enhancements)"
    r"(?: and (?:minor |other |various |performance |stability |reliability )?"
    r"(?:improvements?|fixes|cleanups?|changes|updates|enhancements|optimi[sz]ations))?"
    r"|(?:internal |code )?(?:refactor(?:ing|ed)?|clean-?up|cleanups?)(?: of (?:the )?code)?"
    r"|(?:updated?|bump(?:ed)?|upgrade[sd]?) (?:the )?(?:dependencies|deps|standards[- ]version.*|copyright.*)"
    r"|new upstream (?:stable |bugfix |point |minor |major )?(?:release|version|snapshot).*"
    r"|(?:stability|reliability) improvements?"
    r"|(?:rebuild|rebuilt|no-change rebuild|no change rebuild).*"
    r"|(?:see|refer to) .{0,40}(?:changelog|commit log|git log).*"
    r"|(?:see|refer to|read) \S+(?: \S+){0,3} for (?:more )?(?:details|information|more)"
    r")[.!]?$",
    re.I,
)

# Rule 1: vulnerability, credential exposure, bypass, injection, any CVE.
SECURITY_RE = compile_re(
    r"\bCVE-\d{4}|\bvulnerab|\bsecurity (?:fix|issue|problem|hole|flaw|bug|advisory|vulnerabilit)"
    r"|\bexploit(?:able|ed)\b|\bexploits? (?:a |the )?(?:bug|flaw|hole|vulnerab)|privilege escalation"
    r"|\bescalat\w* privileges?|\bXSS\b|cross-site|\bCSRF\b"
    r"|\binjection\b|(?:heap|stack)[- ]buffer[- ]overflow|\bbuffer (?:over|under)(?:flow|run)|heap[- ]overflow"
    r"|out-of-bounds (?:read|write)|use-after-free|denial[- ]of[- ]service|(?-i:\bDoS\b)|sandbox (?:escape|bypass)"
    r"|(?:authentication|auth|permission|access control|signature verification) bypass"
    r"|\bbypass(?:es|ed)? (?:the )?(?:check|restriction|authentication|verification|protection)"
    r"|arbitrary (?:code|command|file)|remote code execution|\bRCE\b"
    r"|(?:leak|expos|disclos)\w* (?:of )?(?:the )?(?:secret|password|credential|private key|token)"
    r"|(?:secret|password|credential|private key|token)s? (?:were |was |could be )?(?:leak|expos|disclos)"
    r"|\b(?:expos|leak|disclos)\w* (?:\S+ ){0,3}?(?:in|to|into) (?:the )?(?:logs?|log files?|world-readable)\b"
    r"|information disclosure|privacy|symlink attack|\bTOCTOU\b|timing attack|\battacker",
    re.I,
)
SECURITY_HINT_RE = compile_re(r"\bsecurity\b|\bCVE", re.I)

# Rule 2: removal or rename of a command/flag/option/API/field; format or protocol change.
BREAKING_RE = compile_re(
    r"^(?:remove[ds]?|drop(?:ped|s)?|delete[ds]?)\b(?=[^.]{0,60}(?:\boption|\bflag|\bcommand|\bfunction"
    r"|\bapi\b|\bfield|\bsetting|\bsupport\b|\bvariable|\bargument|\bparameter|\bmethod|\bclass\b|\bmodule"
    r"|\bfeature|\bkeyword|\bprogram|\butility|\btool\b|\bendpoint|\bformat|\bextension|\bmode\b"
    r"|\bdeprecated|\blegacy|--|`|\(\)))|^rename[ds]?\b(?! \S+$)"
    r"|\bno longer (?:supported|supports|accepts?|recogni[sz]es?|provides?|available|installed|shipped|built"
    r"|ship(?:s|ped)?|installs?|builds?|allowed|permitted|valid)\b"
    r"|\b(?:is|are) now (?:illegal|invalid|an error|rejected|refused|forbidden|disallowed)\b"
    r"|\bsupport for .{1,60} (?:has been|was|is) (?:removed|dropped)"
    r"|backwards?[- ]incompatib|\bincompatibilit|\bincompatible (?:change|with previous)|\bbreaking change"
    r"|\b(?:ABI|API|SONAME|soname) (?:break|change|bump)|\bSONAME bump|\bbump\w* (?:the )?(?:SONAME|ABI)"
    r"|\brequires? (?:users to|you to|changes to|updating)|\bmust now\b|\bnow requires?\b"
    r"|\b(?:is|are) now required\b",
    re.I,
)
# A passive removal ("... has been removed") is breaking only when nothing else
# explains the entry: "a path that was removed" in a bug report is not a removal.
BREAKING_PASSIVE_RE = compile_re(
    r"\b(?:has|have) been (?:removed|dropped|renamed)\b|\b(?:was|were|is|are) (?:now )?(?:removed|dropped|renamed)\b",
    re.I,
)
FUTURE_REMOVAL_RE = compile_re(r"\bwill be (?:removed|dropped)|\bto be removed\b|\bscheduled for removal"
                               r"|\bin a future", re.I)
BREAKING_HINT_RE = compile_re(
    r"breaking|incompatib|backward|removed|removals?\b|changes in behaviou?r|behaviou?r changes?"
    r"|upgrad\w* notes|migration", re.I,
)

# Rule 3: a default flip is breaking even when framed as an improvement.
DEFAULT_FLIP_RE = compile_re(
    r"\b(?:now|is|are) (?:enabled|disabled|on|off|turned on|turned off|used|the default) by default"
    r"|\bby default,? (?:now|no longer)\b|\bdefault (?:\w+ )?(?:has been |was |is now |now )?"
    r"(?:changed|switched|flipped|adjusted|modified)|\bdefaults? (?:is |are )?now\b|\bnow defaults? to\b"
    r"|\bchange[ds]? the default\b|\bno longer (?:enabled|the default|on) by default"
    r"|\bnow\b[^.]{0,60}\bby default\b|\bredefine[ds]? the default|\bnew default\b",
    re.I,
)

# Rule 4: still works, but announced for removal or discouraged.
DEPRECATION_RE = compile_re(
    r"\bdeprecat|\bwill be (?:removed|dropped)|\bscheduled for removal|\bdiscouraged\b"
    r"|\bplanned (?:for )?removal|\bto be removed in\b",
    re.I,
)
DEPRECATION_HINT_RE = compile_re(r"deprecat", re.I)
# "deprecated" that announces nothing: the entry moves off something deprecated elsewhere
# ("use non-deprecated chown syntax", "remove deprecated C API usage", "since `which` is
# deprecated") or denies a deprecation ("is not deprecated").
DEPRECATED_USE_RE = compile_re(
    r"\bnon-?deprecated\b|\bnot (?:be |been )?deprecated\b"
    r"|\b(?:without(?: using)?|avoid\w*|replac\w*|instead of|fix\w*|stop\w* using) (?:\S+ ){0,3}?\(*deprecated\b"
    r"|\b(?:use|usage|calls?) (?:of |to )(?:the |any |all )?deprecated\b"
    r"|\bdeprecated (?:\w+ ){0,3}?(?:usage|calls?)\b"
    r"|\b(?:since|because|as) (?:the )?`?[\w.-]+`? (?:is|are|was|were|has been|have been) deprecated\b",
    re.I,
)
NOT_DEPRECATED_RE = compile_re(r"\bnot (?:be |been )?deprecated\b", re.I)
# Rule 4 says "still works": an entry that renames or replaces something yet says the old
# form is still accepted is a deprecation, not a removal.
STILL_WORKS_RE = compile_re(
    r"\bstill (?:be )?(?:works?|accepted|acceptable|supported|available|recogni[sz]ed|understood|honou?red|valid)\b"
    r"|\bcontinues? to (?:work|be (?:accepted|supported|recogni[sz]ed))\b",
    re.I,
)

# Rules 5-7, 9: the entry's primary intent.
FIX_RE = compile_re(
    r"\bfix(?:e[sd]|ing)?\b|\bbugs?\b(?!-)|\bcrash|\bsegfault|\bsegmentation fault|\bhangs?\b|\bhung\b"
    r"|\bdeadlock|\bleak(?:s|ed|ing)?\b|\bincorrect(?:ly)?\b|\bwrong(?:ly)?\b|\bregression"
    r"|\bno longer "
    r"(?:crash|fail|hang|abort|exit|error|mis|ignor|report|loop|produc|print|leak|corrupt|truncat|emit|lose|break)"
    r"|\bnow (?:correctly|properly|works|handles)|\bcorrectly\b|\bproperly\b|\berroneous|\bmishandl"
    r"|\bfail(?:s|ed|ure|ing)?\b|\bbroken\b|\brace condition|\bcorrupt|\binfinite loop|\bassert(?:ion)? fail"
    r"|\bwork ?around|\bmisbehav|\bwould (?:sometimes )?(?:crash|fail|hang|report|print)|\binstead of\b"
    r"|\bcompil(?:e|ation) (?:error|failure|warning)s?\b|\btypos? in (?:code|variable)|\bquirks?\b"
    r"|\bundefined behaviou?r|\bdid not work|\bdidn't work|\bnot work(?:ing)? (?:correctly|properly)"
    r"|\bdivi(?:de|sion) by zero|\bnull (?:pointer )?dereference|\bnull pointer",
    re.I,
)
PERF_RE = compile_re(
    r"\bfaster\b|\bspeed(?:s|ed)? ?up|\bperformance\b|\boptimi[sz]|\bless (?:memory|cpu|time)"
    r"|\breduc\w* (?:the )?"
    r"(?:memory|cpu|time|latency|overhead|allocations?|startup|size|number of (?:calls|syscalls|allocations))"
    r"|\bmore efficient|\befficiency\b|\binefficien|\bquicker\b|\bspeedup|\bx faster|\blower (?:memory|latency)"
    r"|\bavoid\w* (?:unnecessary|redundant|needless|extra)\b(?! (?:breakages?|failures?|errors?|warnings?))"
    r"|\bmultiple threads|\bmulti-?thread|\blazily\b|\bSIMD\b|\bacceleration\b",
    re.I,
)
FEATURE_RE = compile_re(
    r"^(?:add(?:ed|s)?|new|introduce[ds]?|implement(?:ed|s)?|support(?:ed|s)?|allow(?:ed|s)?|enable[ds]?"
    r"|provide[ds]?|expose[ds]?|teach|learn(?:ed|t)?)\b"
    r"|\bnew (?:option|command|flag|feature|function|api|setting|subcommand|mode|tool|variable|parameter|argument)s?\b"
    r"|\bnow (?:supports?|accepts?|can|allows?|understands?|recogni[sz]es|knows|offers|shows|reports|provides|has)\b"
    r"|\b(?:learned|learnt|learns|gained|gains) (?:to|the|a|an|how)\b|\badded (?:support|a|an|the)\b"
    r"|\bsupport for\b|\b(?:is|are) now (?:available|supported|possible)|\bsupport\.?$|\b(?:are|is) supported\b"
    r"|\b(?:a|new) port (?:to|for)\b|\bported to\b|\bcan now\b|^(?:display|show|print|write|report|output)s?\b"
    r"|\bnow (?!(?:is|are|has|does|uses|needs|requires|fails|works|handles|returns)\b)\w+s\b",
    re.I,
)
DOCS_RE = compile_re(
    r"^(?:doc(?:s|umentation)?|man ?pages?|readme)\b[:\s]|\bdocument(?:ation|ed|s)?\b|\bman ?pages?\b"
    r"|\btypos?\b|\bspelling\b|\bhelp (?:text|message|output)|(?<!see )\bREADME\b"
    r"|\b(?:the|a|reference|user|texinfo|info|online) manual\b|\bmanual (?:page|entry|section)s?\b"
    r"|(?<!'s )(?<![.-])\bcomments?\b"
    r"|\bexamples? in the\b|\bclarif(?:y|ied|ies)\b|\btranslations?\b|\b[\w@-]+\.pot?\b"
    r"|\bweb ?site\b|\bchangelog (?:entry|entries|file)\b",
    re.I,
)

HINT_KIND = [
    (compile_re(r"\bsecurity\b", re.I), Kind.security, 1),
    (compile_re(r"breaking|incompatib|backward", re.I), Kind.breaking, 2),
    (compile_re(r"deprecat", re.I), Kind.deprecation, 4),
    (compile_re(r"\bfix|\bbug|regression", re.I), Kind.fix, 5),
    (compile_re(r"perform|speed|optimi", re.I), Kind.performance, 6),
    (compile_re(r"feature|^added\b|\badditions?\b|^new\b|enhancement|improvement", re.I), Kind.feature, 7),
    (compile_re(r"\bdoc", re.I), Kind.docs, 9),
]

WRONGLY_RE = compile_re(r"\b(?:incorrect(?:ly)?|wrong(?:ly)?|spurious(?:ly)?|bogus|erroneous(?:ly)?)\b", re.I)
LEADING_FEATURE_RE = compile_re(
    r"^(?:add(?:ed|s)?|new|introduce[ds]?|implement(?:ed|s)?|support(?:ed|s)?|allow(?:ed|s)?|provide[ds]?"
    r"|expose[ds]?)\b"
    r"(?! (?:\S+ ){0,6}?(?:documentation|docs|comments?|man ?pages?|manual|tutorial|faq)\b)", re.I)
LEADING_VERB_KIND = [
    # rule 9 before rule 5: fixing the help text or the docs changes only documentation
    (compile_re(r"^(?:fix(?:e[sd])?|correct(?:s|ed)?) (?:the |a |an |some )?(?:\S+ )?"
                r"(?:help|usage) (?:message|text|output)s?\b"
                r"|^(?:fix(?:e[sd])?|correct(?:s|ed)?) (?:\S+ ){0,3}?(?:documentation|docs|man ?pages?|comments?)\b",
                re.I), Kind.docs, 9),
    (compile_re(r"^(?:fix(?:e[sd])?|correct(?:s|ed)?|repair(?:s|ed)?|resolve[sd]?|prevent(?:s|ed)?|avoid(?:s|ed)?"
                r"|handle[sd]?|catch(?:es)?|restore[ds]?"
                r"|ensure[sd]?|protect(?:s|ed)? against)\b", re.I), Kind.fix, 5),
    (compile_re(r"^(?:speed(?:s|ed)? up|optimi[sz]e[sd]?|improve[sd]? (?:the )?(?:performance|speed)"
                r"|(?:add(?:ed|s)?|implement(?:ed|s)?|use[sd]?) (?:\S+ ){0,4}?"
                r"(?:SIMD|acceleration|fast(?:er)? path|optimi[sz]ations?))\b", re.I), Kind.performance, 6),
    (LEADING_FEATURE_RE, Kind.feature, 7),
    (compile_re(r"^(?:document(?:ed|s)?|doc(?:s)?:|clarif(?:y|ied|ies)|documentation\b"
                r"|(?:add(?:ed|s)?|new|update[ds]?|improve[ds]?|expand(?:ed)?|rewr\w*) (?:\S+ ){0,6}?"
                r"(?:documentation|docs|comments?|man ?pages?|manual|tutorial|faq)\b"
                r"|(?:silence[sd]?|suppress(?:es|ed)?|remove[sd]?|reword(?:ed)?"
                r"|quiet(?:en)?s?) (?:\S+ ){0,3}?(?:warnings?|messages?|diagnostics?)\b)", re.I), Kind.docs, 9),
]

# Changes that touch only packaging, CI or tests say nothing to a user (rule 8),
# unless they also fix something or carry a security cue.
INTERNAL_RE = compile_re(
    r"\bdebian/|(?:^|\s)d/[a-z]|\bdh[_ -]\w|\bdebhelper|build[- ]?dep(?:ends?|endency|endencies)|standards-version"
    r"|\buploaders?\b|\blintian|\.symbols\b|\bsymbols(?:'|\.\w+)? files?\b|\bvcs-\w+|\bsalsa\b|\bwatch file|\bquilt\b"
    r"|\bcdbs\b"
    r"|\.install\b|\budebs?\b|\bmaintainers?\b|\bsource format|\bgbp\b|\bautopkgtest|\bhardening"
    r"|\bcompat(?:ibility)? (?:level )?to \d|\bcopyright (?:entry|file|years?|notice)|\bbuild flags?\b"
    r"|\bmerge (?:remote-tracking )?branch|\bexport-package|\bswapfile|\bCI\b|\bgithub actions"
    r"|^(?:add|added|adds|update[ds]?|improve[ds]?|extend(?:ed)?|more|new) "
    r"(?:a |some |more |the )?(?:unit |regression )?tests?\b"
    r"|\btest ?(?:suite|coverage|helper|case)s?\b|\bupstream metadata\b"
    r"|\bdependency (?:upgrade|update|bump)s?\b|\b(?:upgrade|update|bump)(?:s|d|ed)? (?:the )?\S+ dependency\b",
    re.I,
)
INTERNAL_FIX_RE = compile_re(r"\bfix(?!e[sd]? #\d)|\bcrash|\bprevent|\bbug\b|\bregression", re.I)
# A section that gathers internal work with everything else ("Performance, Internal
# Implementation, Development Support etc.") is no evidence for any one kind.
INTERNAL_HINT_RE = compile_re(r"\binternal\b|\bdevelopment support\b", re.I)
PATH_PREFIX_RE = compile_re(r"^[\w.+-]+(?:/[\w.+-]+)+:\s+(?=\w)")
AREA_RE = compile_re(r"^(?:\*\*)?([a-z0-9_.,/-]{2,30})(?:\*\*)?:\s", re.I)
INTERNAL_AREAS = {"test", "tests", "build", "tools", "deps", "meta", "benchmark", "ci", "bootstrap",
                  "gyp", "src", "lib", "debian", "d", "test_runner", "typings"}
DOC_AREAS = {"doc", "docs", "documentation", "man", "manpages"}
PERF_AREAS = {"perf", "performance", "optimization", "optimisation", "speed"}


def identifiers(text: str) -> list[str]:
    """Backticked code spans in input order, without duplicates (see IDENT_RE for the
    quoting styles read; reST links and non-code roles are not identifiers)."""
    seen: dict[str, None] = {}
    for m in IDENT_RE.finditer(text):
        if m.group("link") is not None or m.group("quotation") is not None:
            continue
        if m.group("role") is not None:
            if m.group("role").rsplit(":", 1)[-1].lower() not in CODE_ROLES:
                continue  # :ref:`x`, :issue:`123`, :doc:`...` are cross-references
            target = ROLE_TARGET_RE.search(m.group("role_body"))  # :func:`title <target>`
            value = (target.group(1) if target else m.group("role_body")).lstrip("~!")
        else:
            value = m.group("literal") or m.group("code") or m.group("gnu") or m.group("code_apos")
        if value.strip() and not value.strip("#:").isdigit():  # `751956` is a bug number, not code
            seen.setdefault(value, None)
    return list(seen)


WS_RE = compile_re(r"\s+")
TRAILING_PAREN_RE = compile_re(r"\s*\([^)]{0,80}\)\s*(?=[.!]?$)")  # "(no security issue)", "(Closes: #1)"


def is_content_free(text: str) -> bool:
    stripped = TRAILING_PAREN_RE.sub("", WS_RE.sub(" ", text).strip())
    return bool(CONTENT_FREE_RE.match(stripped))


MARKUP_RES = [
    compile_re(r"^\*\*[^*]{1,40}\*\*:\s*"),
    compile_re(r"^\(?(?:SEMVER-MAJOR|SEMVER-MINOR)\)?\s*", re.I),
    compile_re(r"^(?:[a-z0-9_.,/-]{2,30}):\s+(?=\w)"),  # "timers: fix ..."
    compile_re(r"^(?:(?:bug|issue|gh-?)?#\d+|\[[^\]]{1,40}\]|warning|note)[:!.]?\s+", re.I),
    compile_re(r"\s*\((?:[A-Z][\w.'-]+(?: [A-Z][\w.'-]+){0,3}(?:, )?)+\)\s*$"),
]


def _strip_markup(text: str) -> str:
    """Drop decorations that say nothing about intent: nodejs `**area**:` / `area:`
    prefixes, semver labels, leading ticket refs and WARNING:, trailing (Author) credits."""
    for pattern in MARKUP_RES:
        text = pattern.sub("", text)
    return text.strip()


NO_SECURITY_RE = compile_re(r"\b(?:no|not a|without) security (?:issue|impact|problem)s?", re.I)
SEMVER_MAJOR_RE = compile_re(r"SEMVER-MAJOR")
LEADING_REMOVAL_RE = compile_re(r"^(?:remove|drop|rename)", re.I)


@functools.lru_cache(maxsize=4096)
def _hint_cues(hint: str) -> tuple:
    """What a section heading says, computed once per distinct heading (there are few)."""
    hinted = None if INTERNAL_HINT_RE.search(hint) else next(
        ((k, r) for p, k, r in HINT_KIND if p.search(hint)), None)
    return (bool(SECURITY_HINT_RE.search(hint)), bool(INTERNAL_RE.search(hint)),
            bool(DEPRECATION_HINT_RE.search(hint)), bool(BREAKING_HINT_RE.search(hint)), hinted)


def _internal_only(text: str, body: str, internal_hint: bool) -> bool:
    """Rule 8's internal cue: packaging, CI, tests or build plumbing ("Updated
    dependencies" in the contract), with nothing fixed."""
    area = AREA_RE.match(text)
    area_path = area.group(1).lower().split("/") if area else []
    internal = internal_hint or INTERNAL_RE.search(body) or (
        area_path and area_path[0] in INTERNAL_AREAS and "patches" not in area_path)
    return bool(internal) and not INTERNAL_FIX_RE.search(body)


CONTENT_FREE_CORES = ["bug fixes", "fixes", "improvements", "cleanups", "updates", "changes",
                      "tweaks", "enhancements"]
CONTENT_FREE_QUALIFIERS = ["", "minor ", "various ", "several ", "misc ", "small "]
CONTENT_FREE_TAILS = ["", " and improvements", " and performance improvements",
                      " and stability improvements", " and other changes",
                      " and reliability improvements"]
CONTENT_FREE_PHRASES = [
    "Internal refactoring", "Code cleanup", "Updated dependencies", "Bump dependencies",
    "Refactoring of the code", "Stability improvements",
    "Reliability improvements", "New upstream release", "No-change rebuild",
    "See the commit log for details", "See ChangeLog for details",
]


@functools.lru_cache(maxsize=1)
def content_free_examples() -> tuple[str, ...]:
    """Synthetic entries that say nothing a user must act on ("Minor fixes and
    improvements."), every one content-free by `is_content_free`, in a fixed order:
    export.unknown_augment draws from them."""
    texts = sorted({(q + c + t).capitalize() for q in CONTENT_FREE_QUALIFIERS
                    for c in CONTENT_FREE_CORES for t in CONTENT_FREE_TAILS} | set(CONTENT_FREE_PHRASES))
    return tuple(t + p for t in texts for p in ("", ".") if is_content_free(t + p))


def unknown_cue(text: str, hint: str | None) -> bool:
    """The entry itself says why it is unknown (rule 8): it is content-free, or it only
    touches internals. Rule 8 without such a cue is the labeler finding nothing at all."""
    return is_content_free(text) or _internal_only(text, _strip_markup(text), _hint_cues(hint or "")[1])


def rule_kind(text: str, hint: str | None) -> tuple[Kind, int]:
    """Apply the locked kind rules in their precedence order (rule 10)."""
    return _rule_kind(text, _strip_markup(text), hint)


def _rule_kind(text: str, body: str, hint: str | None) -> tuple[Kind, int]:
    security_hint, internal_hint, deprecation_hint, breaking_hint, hint_kind = _hint_cues(hint or "")
    if is_content_free(body):
        return Kind.unknown, UNKNOWN_RULE
    if (SECURITY_RE.search(body) and SECURITY_RE.search(NO_SECURITY_RE.sub("", body))) or (
            security_hint and not DOCS_RE.match(body)):
        return Kind.security, 1
    area = AREA_RE.match(text)
    if area and area.group(1).lower() in DOC_AREAS:
        return Kind.docs, 9
    if area and area.group(1).lower() in PERF_AREAS:
        return Kind.performance, 6
    if _internal_only(text, body, internal_hint):
        return Kind.unknown, UNKNOWN_RULE
    if SEMVER_MAJOR_RE.search(text):
        return Kind.breaking, 2
    deprecates = DEPRECATION_RE.search(body) and DEPRECATION_RE.search(DEPRECATED_USE_RE.sub(" ", body))
    if deprecates and STILL_WORKS_RE.search(body):
        return Kind.deprecation, 4
    future_only = FUTURE_REMOVAL_RE.search(body) and not LEADING_REMOVAL_RE.match(body)
    if not future_only and (BREAKING_RE.search(body) or (
            BREAKING_PASSIVE_RE.search(body) and not FIX_RE.search(body)
            and not LEADING_FEATURE_RE.match(body))):
        return Kind.breaking, 2
    if DEFAULT_FLIP_RE.search(body):
        return Kind.breaking, 3
    if deprecates or (deprecation_hint and not NOT_DEPRECATED_RE.search(body)):
        return Kind.deprecation, 4
    if breaking_hint and not FIX_RE.search(body):
        return Kind.breaking, 2
    lead = PATH_PREFIX_RE.sub("", body, count=1)  # "debian/patches/x.patch: Prevent ..."
    for pattern, kind, rule in LEADING_VERB_KIND:
        if pattern.match(lead):
            if kind is Kind.docs and WRONGLY_RE.search(body):
                return Kind.fix, 5
            return kind, rule
    # No leading verb: count the cues; the hint breaks ties and fills silence.
    scores = {
        Kind.fix: len(FIX_RE.findall(body)),
        Kind.performance: len(PERF_RE.findall(body)),
        Kind.feature: len(FEATURE_RE.findall(body)),
        Kind.docs: len(DOCS_RE.findall(body)),
    }
    if hint_kind and hint_kind[0] in scores:
        scores[hint_kind[0]] += 1
    best = max(scores.values())
    if best == 0:
        if hint_kind and hint_kind[0] not in FIRM_KINDS:
            return hint_kind
        return Kind.unknown, UNKNOWN_RULE
    rule_of = {Kind.fix: 5, Kind.performance: 6, Kind.feature: 7, Kind.docs: 9}
    for kind in (Kind.fix, Kind.performance, Kind.feature, Kind.docs):  # fixed tie order
        if scores[kind] == best:
            return kind, rule_of[kind]
    raise AssertionError("unreachable")


CRITICAL_RE = compile_re(
    r"remote code execution|\bRCE\b|arbitrary code|actively exploited|in the wild"
    r"|data loss|los(?:e|es|ing|t) (?:data|files|changes|commits|work)|silent(?:ly)? (?:data )?corrupt"
    r"|data corruption|corrupt(?:s|ed|ion of)? (?:the )?(?:data|files?|repositor|database|index|archive)",
    re.I,
)
MEDIUM_FIX_RE = compile_re(
    r"\bcrash|\bsegfault|segmentation fault|\bhangs?\b|\bhung\b|\bdeadlock|infinite loop|\babort"
    r"|\bcorrupt|\bdata\b|\bbilling|\bcharg(?:e|ed|ing)\b|\block ?up|\bstuck\b|\bassert(?:ion)? fail",
    re.I,
)


def rule_severity(kind: Kind, rule: int, text: str) -> Severity:
    if kind is Kind.security:
        return Severity.critical if CRITICAL_RE.search(text) else Severity.high
    if kind is Kind.breaking:
        return Severity.medium if rule == 3 else Severity.high
    if kind is Kind.deprecation:
        return Severity.medium
    if kind is Kind.fix:
        if CRITICAL_RE.search(text):
            return Severity.critical
        return Severity.medium if MEDIUM_FIX_RE.search(text) else Severity.low
    return Severity.low


LEAD_WORDS = compile_re(
    r"^(?:(?:add(?:ed|s)?|fix(?:ed|es)?|remove[ds]?|drop(?:ped|s)?|rename[ds]?|deprecate[ds]?|update[ds]?"
    r"|improve[ds]?|introduce[ds]?|implement(?:ed|s)?|support(?:ed|s)?|allow(?:ed|s)?|enable[ds]?"
    r"|disable[ds]?|change[ds]?|make|made|makes|use[ds]?|new|document(?:ed|s)?|correct(?:ed|s)?"
    r"|avoid(?:ed|s)?|prevent(?:ed|s)?|handle[ds]?|speed(?:s|ed)? up|optimi[sz]e[ds]?|provide[ds]?"
    r"|expose[ds]?|bump(?:ed|s)?|upgrade[ds]?|clarif(?:y|ied|ies)|resolve[ds]?|teach|ensure[ds]?"
    r"|refactor(?:ed|s)?|rewr(?:ite|ote|itten)|reworked|rework|small|minor|trivial|obscure)\s+)*"
    r"(?:(?:the|a|an|some|support for|for|of|to|in|on|with)\s+)*",
    re.I,
)
STOP_WORDS = {
    "to", "for", "when", "in", "on", "that", "which", "so", "with", "from", "by", "now", "no",
    "is", "are", "was", "were", "will", "be", "been", "has", "have", "had", "if", "and", "or",
    "but", "as", "at", "into", "because", "since", "after", "before", "while", "where", "can",
    "could", "should", "would", "may", "might", "not", "does", "do", "did", "it", "its", "this",
    "these", "those", "than", "via", "under", "over", "about", "used", "being", "also", "then",
    "such", "like", "unless", "until", "across", "against", "without", "within", "per",
    "learned", "learnt", "lost", "relied", "caused", "got", "gets", "returns", "returned",
    "isn't", "doesn't", "didn't", "wasn't", "can't", "won't", "must", "need", "needs",
    "even", "instead", "only", "still", "again", "there", "here", "they", "we", "you", "i",
    "due", "whose", "what", "how", "why", "who",
}
KIND_NOUN = {
    Kind.fix: "fix", Kind.feature: "support", Kind.performance: "performance",
    Kind.docs: "documentation", Kind.deprecation: "deprecation", Kind.breaking: "change",
    Kind.security: "security fix", Kind.unknown: "changes",
}
HEAD_NOUNS = {
    "fix", "bug", "crash", "leak", "regression", "hang", "support", "option", "flag", "command",
    "deprecation", "change", "documentation", "performance", "variable", "setting", "function",
    "api", "error", "warning", "overflow", "vulnerability", "message", "output", "format",
}
QUOTED_RE = compile_re(r"[`\"']([^`\"'\n]{2,40})[`\"']")


IDENTIFIER_WORD_RE = compile_re(r"[_/.()=\d]|[a-z][A-Z]|^-")
NON_KEBAB_RE = compile_re(r"[^a-z0-9]+")


def _is_identifier(word: str) -> bool:
    return bool(IDENTIFIER_WORD_RE.search(word)) or word.isupper() and len(word) > 1


REF_PAREN_RE = compile_re(r"\s*\((?:#\d+|closes:[^)]*|lp: ?#\d+|:\w+:`\d+`)\)", re.I)


def _topic(text: str, body: str | None = None) -> list[str]:
    """The noun phrase naming what changed: a short quoted command or identifier when the
    entry has one, else the words after the lead verb up to the first function word."""
    body = REF_PAREN_RE.sub("", _strip_markup(text) if body is None else body)
    quoted = [q for q in QUOTED_RE.findall(body) if len(q.split()) <= 4]
    if quoted:
        words = [w.strip(",.;:!?()[]{}<>") for w in quoted[0].split()]
        return [w if _is_identifier(w) else w.lower() for w in words if w]
    body = LEAD_WORDS.sub("", body, count=1)
    words: list[str] = []
    for raw in WS_RE.split(body):
        word = raw.strip("`'\"*,.;:!?()[]{}<>#")
        if not word or len(word) > 30:  # a path or option list is no noun phrase
            if words:
                break
            continue
        if word.lower() in STOP_WORDS:
            if words:
                break
            continue
        words.append(word if _is_identifier(word) else word.lower())
        if len(words) == 4 or raw.endswith((",", ";", ":", ".")):
            break
    return words


def rule_subject(topic: list[str], kind: Kind, product: str) -> str:
    if kind is Kind.unknown:
        return f"{product} {KIND_NOUN[kind]}".strip()
    words = list(topic)
    noun = KIND_NOUN[kind].split()
    if len(words) < 2 or (kind in (Kind.fix, Kind.security, Kind.deprecation)
                          and not HEAD_NOUNS & {w.lower() for w in words}):
        words = words + noun
    if len(words) < 2:
        words = [kebab(product), *words]
    return " ".join(words[:6])


DEADLINE_RE = compile_re(
    r"\b(?:until|before|by|after|on)\s+(\d{4}-\d{2}-\d{2})\b"
    r"|\b(?:removed|dropped|deleted|unsupported|disabled|deprecated|remove|drop)\b[^.]{0,40}?"
    r"\b(?:in|by|with|as of|starting (?:with|in)|from)\s+(?:version\s+|release\s+|v)?"
    r"(?:[A-Za-z][\w.-]* )?v?(\d+(?:\.\d+){0,3})\b(?!-\d)",
    re.I,
)


def rule_deadline(text: str, kind: Kind) -> str | None:
    if kind not in (Kind.deprecation, Kind.breaking, Kind.security):
        return None
    m = DEADLINE_RE.search(text)
    if not m:
        return None
    return m.group(1) or m.group(2)


AREA_TAGS = [
    ("credentials", compile_re(r"credential|password|secret|token|private key|api key", re.I)),
    ("env-var", compile_re(r"environment variable|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b=?|\benv\b", re.I)),
    ("cli", compile_re(r"(?:^|\s)`?--?[a-z][\w-]*|\bcommand[- ]line|\bsubcommand|\boption\b|\bflag\b", re.I)),
    ("config", compile_re(r"\bconfig(?:uration)?\b|\bsetting|\.conf\b|\bini\b", re.I)),
    ("api", compile_re(r"\bAPI\b|\bfunction\b|\w+\(\)|\bABI\b|\blibrary\b", re.I)),
    ("build", compile_re(r"\bbuild|\bcompil|\bconfigure\b|\bmake(?:file)?\b|\bcmake|\blink(?:er|ing)\b", re.I)),
    ("network", compile_re(r"\bhttps?\b|\bTLS\b|\bSSL\b|\bnetwork|\bsocket|\bproxy\b|\bDNS\b", re.I)),
    ("i18n", compile_re(r"translat|locale|\bi18n\b|\bl10n\b|unicode|utf-?8", re.I)),
    ("tests", compile_re(r"\btests?\b|\btest ?suite|\btesting\b", re.I)),
    ("docs", compile_re(r"\bdoc(?:s|umentation)\b|\bman ?page", re.I)),
]


def kebab(value: str) -> str:
    value = NON_KEBAB_RE.sub("-", value.lower()).strip("-")
    return value or "misc"


def rule_tags(text: str, kind: Kind, product: str) -> list[str]:
    tags = [kebab(product)]
    if kind is Kind.security:
        tags.append("security")
    for tag, pattern in AREA_TAGS:
        if len(tags) >= 4:
            break
        if pattern.search(text) and tag not in tags:
            tags.append(tag)
    return tags


IMPERATIVE_VERBS = {
    "add", "adjust", "adopt", "apply", "audit", "avoid", "check", "configure", "consider",
    "disable", "enable", "expect", "ignore", "install", "migrate", "move", "note", "plan",
    "read", "rebuild", "recompile", "remove", "rename", "replace", "retest", "review", "rotate",
    "run", "set", "stop", "switch", "test", "try", "update", "upgrade", "use", "verify", "watch",
}


def _code_refs(text: str, limit: int = 2) -> str:
    idents = identifiers(text)[:limit]
    return ", ".join(f"`{i}`" for i in idents)


def rule_action_text(text: str, kind: Kind, rule: int, product: str, version: str | None,
                     topic: list[str], subject: str, deadline: str | None) -> str:
    release = f"{product} {version}" if version else f"the latest {product} release"
    refs = _code_refs(text)
    target = refs or " ".join(topic) or subject
    cves = sorted(set(m.group(0).upper() for m in CVE_RE.finditer(text)))[:2]
    if kind is Kind.security:
        what = " and ".join(cves) if cves else f"the {subject}"
        sentence = f"Upgrade to {release} to get the fix for {what}"
        if refs:
            sentence += f" and review uses of {refs}"
    elif kind is Kind.breaking and rule == 3:
        sentence = (f"Review the new default for {target} in {release} and set it explicitly "
                    "if you relied on the old behaviour")
    elif kind is Kind.breaking:
        sentence = f"Update scripts and configuration that rely on {target} before upgrading to {release}"
    elif kind is Kind.deprecation:
        when = f" before {deadline}" if deadline else " before it is removed"
        sentence = f"Migrate away from {target}{when}"
    elif kind is Kind.fix:
        sentence = f"Upgrade to {release} to get the fix for {target}"
    elif kind is Kind.performance:
        sentence = f"Upgrade to {release} to get the performance improvement in {target}"
    elif kind is Kind.feature:
        sentence = f"Consider using {target} from {release} where it fits your workflow"
    elif kind is Kind.docs:
        sentence = f"Read the updated documentation for {target}"
    elif refs:
        sentence = f"Review the {release} notes on {refs} before upgrading; this entry names no specific change"
    else:
        sentence = f"Review the {release} notes before upgrading; this entry names no specific change"
    words = sentence.split()
    if len(words) > 34:
        sentence = " ".join(words[:34])
    return sentence.rstrip(".") + "."


def rule_label(text: str, hint: str | None, product: str, version: str | None) -> tuple[dict, int]:
    """The deterministic teacher: all six fields from text + hint, and the deciding rule.
    The release's version is named only where the input shows it (the entry or its
    section heading): the model sees nothing else, so a label that names it otherwise
    teaches the model to make versions up."""
    if version and not in_input(version, text, hint):
        version = None
    body = _strip_markup(text)
    kind, rule = _rule_kind(text, body, hint)
    severity = rule_severity(kind, rule, text)
    topic = _topic(text, body)[:4]  # the noun phrase both subject and action_text are built from
    subject = rule_subject(topic, kind, product)
    deadline = rule_deadline(text, kind)
    label = {
        "kind": kind.value,
        "severity": severity.value,
        "subject": subject,
        "action_text": rule_action_text(text, kind, rule, product, version, topic, subject, deadline),
        "deadline": deadline,
        "tags": rule_tags(text, kind, product),
    }
    return label, rule


def hint_kind(hint: str | None) -> Kind | None:
    """The kind a section heading suggests on its own, if any."""
    if not hint:
        return None
    return next((k for p, k, _ in HINT_KIND if p.search(hint)), None)


# ---------------------------------------------------------------- STYLE checks

VERSION_RE = compile_re(r"(?<![\w.-])v?\d+(?:\.\d+)+(?![\w-]|\.\d)")


def in_input(value: str, text: str, hint: str | None) -> bool:
    return value in text or value in (hint or "")


# Every reason code style_problems gives, in STYLE.md's order (a test holds the three together).
STYLE_CODES = ("style_subject_length", "style_subject_case", "style_action_not_imperative",
               "style_action_too_long", "style_action_not_one_sentence", "style_identifier_missing",
               "style_identifier_not_in_input", "style_version_not_in_input", "style_tags")


def style_problems(label: dict, text: str, hint: str | None = None) -> list[str]:
    """STYLE.md rules a schema-valid label can still break; each a reason code."""
    problems = []
    stated = [m.group(0) for m in VERSION_RE.finditer(label["action_text"])]
    if label["deadline"]:
        stated.append(label["deadline"])
    if any(not in_input(v.removeprefix("v"), text, hint) for v in stated):
        problems.append("style_version_not_in_input")
    subject_words = label["subject"].split()
    if not 2 <= len(subject_words) <= 6:
        problems.append("style_subject_length")
    if any(w != w.lower() and not _is_identifier(w) for w in subject_words):
        problems.append("style_subject_case")
    action = label["action_text"]
    first = action.split()[0].lower() if action.split() else ""
    if first not in IMPERATIVE_VERBS:
        problems.append("style_action_not_imperative")
    if len(action.split()) > 35:
        problems.append("style_action_too_long")
    if not action.endswith(".") or re.search(r"[.!?]\s+[A-Z]", IDENT_RE.sub("x", action)):
        problems.append("style_action_not_one_sentence")
    input_idents = identifiers(text)
    action_idents = identifiers(action)
    if any(i not in input_idents for i in action_idents):
        problems.append("style_identifier_not_in_input")
    if input_idents and not action_idents:
        problems.append("style_identifier_missing")
    tags = label["tags"]
    if len(set(tags)) != len(tags) or any(not re.match(TAG_PATTERN, t) for t in tags):
        problems.append("style_tags")
    return sorted(problems)
