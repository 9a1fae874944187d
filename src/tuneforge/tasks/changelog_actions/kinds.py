"""The rule labeler's kind decision: the locked kind rules (1-10) in their precedence order,
the content-free and internal-only cues of rule 8, and what a section heading suggests."""
from __future__ import annotations

import functools
import re

from tuneforge.prefilter import compile_re
from tuneforge.tasks.changelog_actions.schema import FIRM_KINDS, UNKNOWN_RULE, Kind

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

# Rule 1: vulnerability, credential exposure, bypass, injection, any CVE; the memory-safety bugs the
# contract names (overflow, over-read, out-of-bounds access, use-after-free, double free: v6).
SECURITY_RE = compile_re(
    r"\bCVE-\d{4}|\bvulnerab|\bsecurity (?:fix|issue|problem|hole|flaw|bug|advisory|vulnerabilit)"
    r"|\bexploit(?:able|ed)\b|\bexploits? (?:a |the )?(?:bug|flaw|hole|vulnerab)|privilege escalation"
    r"|\bescalat\w* privileges?|\bXSS\b|cross-site|\bCSRF\b"
    r"|\binjection\b|(?:heap|stack)[- ]buffer[- ]overflow|\bbuffer (?:over|under)(?:flow|run)|heap[- ]overflow"
    r"|out-of-bounds (?:read|write|access)|use-after-free|double[- ]free|\bover-?reads?\b"
    r"|denial[- ]of[- ]service|(?-i:\bDoS\b)|sandbox (?:escape|bypass)"
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


def strip_markup(text: str) -> str:
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


def unknown_cue(text: str, hint: str | None) -> bool:
    """The entry itself says why it is unknown (rule 8): it is content-free, or it only
    touches internals. Rule 8 without such a cue is the labeler finding nothing at all."""
    return is_content_free(text) or _internal_only(text, strip_markup(text), _hint_cues(hint or "")[1])


def rule_kind(text: str, hint: str | None) -> tuple[Kind, int]:
    """Apply the locked kind rules in their precedence order (rule 10)."""
    return body_kind(text, strip_markup(text), hint)


def body_kind(text: str, body: str, hint: str | None) -> tuple[Kind, int]:
    """rule_kind of an entry whose markup is already stripped (`body`): rule_label strips once."""
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


def hint_kind(hint: str | None) -> Kind | None:
    """The kind a section heading suggests on its own, if any."""
    if not hint:
        return None
    return next((k for p, k, _ in HINT_KIND if p.search(hint)), None)


def hint_class(hint: str | None) -> str | None:
    """The class a section heading suggests on its own: `Task.hint_class`."""
    return kind.value if (kind := hint_kind(hint)) else None
