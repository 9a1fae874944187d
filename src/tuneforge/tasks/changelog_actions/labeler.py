"""The deterministic rule labeler (the default teacher): all six fields of an action item
from the entry, its section hint, product and version, and the rule that decided the kind.
What counts as an identifier or as shown in the input is style.py's, so its labels meet STYLE."""
from __future__ import annotations

import re

from tuneforge.prefilter import compile_re
from tuneforge.tasks.changelog_actions.kinds import WS_RE, body_kind, strip_markup
from tuneforge.tasks.changelog_actions.schema import Kind, Severity
from tuneforge.tasks.changelog_actions.style import (
    FUNCTION_WORDS,
    identifiers,
    in_input,
    is_identifier,
    undouble,
)

CVE_RE = compile_re(r"\bCVE-\d{4}-\d{4,}\b", re.I)
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
NON_KEBAB_RE = compile_re(r"[^a-z0-9]+")


REF_PAREN_RE = compile_re(r"\s*\((?:#\d+|closes:[^)]*|lp: ?#\d+|:\w+:`\d+`)\)", re.I)


def _topic(text: str, body: str | None = None) -> list[str]:
    """The noun phrase naming what changed: a short quoted command or identifier when the
    entry has one, else the words after the lead verb up to the first function word."""
    body = REF_PAREN_RE.sub("", strip_markup(text) if body is None else body)
    quoted = [q for q in QUOTED_RE.findall(body) if len(q.split()) <= 4]
    if quoted:
        words = [w.strip(",.;:!?()[]{}<>") for w in quoted[0].split()]
        return [w if is_identifier(w) else w.lower() for w in words if w]
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
        words.append(word if is_identifier(word) else word.lower())
        if len(words) == 4 or raw.endswith((",", ";", ":", ".")):
            break
    while words and words[-1].lower() in FUNCTION_WORDS:  # cut at four: "portuguese translation of"
        words.pop()
    return words


def rule_subject(topic: list[str], kind: Kind, product: str) -> str:
    if kind is Kind.unknown:
        return f"{product} {KIND_NOUN[kind]}".strip()
    words = undouble(" ".join(topic)).split()
    noun = KIND_NOUN[kind].split()
    ends_with_noun = words[-len(noun):] == noun  # "documentation" + "documentation": once is enough
    if not ends_with_noun and (len(words) < 2 or (kind in (Kind.fix, Kind.security, Kind.deprecation)
                                                  and not HEAD_NOUNS & {w.lower() for w in words})):
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


def _code_refs(text: str, limit: int = 2) -> str:
    idents = identifiers(text)[:limit]
    return ", ".join(f"`{i}`" for i in idents)


def rule_action_text(text: str, kind: Kind, rule: int, product: str, version: str | None,
                     topic: list[str], subject: str, deadline: str | None) -> str:
    release = f"{product} {version}" if version else f"the latest {product} release"
    notes = f"the {product} {version} notes" if version else f"the latest {product} release notes"
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
        sentence = f"Review {notes} on {refs} before upgrading; this entry names no specific change"
    else:
        sentence = f"Review {notes} before upgrading; this entry names no specific change"
    # a topic that starts with the template's last word ("Consider using" + "using libksba ...")
    sentence = undouble(sentence)
    words = sentence.split()
    if len(words) > 34:
        sentence = " ".join(words[:34])
    return sentence.rstrip(".") + "."


def rule_reading(text: str, hint: str | None) -> tuple[Kind, Severity]:
    """The kind and severity rule_label gives the entry (neither depends on product or
    version), at about half its cost: what the prompt shows the model (prompt.render_user)."""
    kind, rule = body_kind(text, strip_markup(text), hint)
    return kind, rule_severity(kind, rule, text)


def rule_label(text: str, hint: str | None, product: str, version: str | None) -> tuple[dict, int]:
    """The deterministic teacher: all six fields from text + hint, and the deciding rule.
    The release's version is named only where the input shows it (the entry or its
    section heading): the model sees nothing else, so a label that names it otherwise
    teaches the model to make versions up."""
    if version and not in_input(version, text, hint):
        version = None
    body = strip_markup(text)
    kind, rule = body_kind(text, body, hint)
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
