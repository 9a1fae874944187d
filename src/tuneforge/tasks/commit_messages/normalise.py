"""The one deterministic normaliser of an author's message into the label's scope, subject
and body (the contract's Labels section), with the reasons a message cannot be made to meet
the rules (such a record goes to review, not to training).

Subject: the first paragraph (git's own reading of a subject), without `[PATCH n/m]` tags or
a Conventional Commits prefix; a leading `component: ` becomes the scope when the diff shows
that component, else it is dropped; no trailing period; the first verb put in the imperative
where the change is mechanical (VERB_FORMS); the first letter capitalised.
Body: the paragraphs after it, without trailer lines (Signed-off-by:, Bug-Debian:, ...), lines
that credit or sign with a name, links, e-mail addresses and `Name <address>`, whitespace-joined and cut at a
sentence end to <= 60 words; null when nothing is left.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from tuneforge.tasks.commit_messages.schema import BODY_MAX, SCOPE_PATTERN, SUBJECT_MAX, CommitType

BODY_WORDS = 60
PATCH_TAG_RE = re.compile(r"^\s*(?:\[[^\]]*\b(?:PATCH|RFC)\b[^\]]*\]\s*)+", re.I)
TYPES_ALT = "|".join(t.value for t in CommitType)
TYPE_PREFIX_RE = re.compile(rf"^(?:{TYPES_ALT})(?:\(([^)]{{1,40}})\))?!?:\s+", re.I)
COMPONENT_RE = re.compile(r"^((?:[\w.+/-]|::){1,40}):\s+(?=\S)")  # udev:, lib/http:, Math::Trig:
TAG_RE = re.compile(r"^\[([\w.+/ -]{1,40})\]\s*")  # "[clang] ", "[3.11] ": LLVM's and CPython's tags
BULLET_RE = re.compile(r"^[*-]\s+")
TRAILER_RE = re.compile(
    r"^\s*(?:Bug(?:-[\w]+)?|Forwarded|Origin|Last-Update|Reviewed-by|Reviewed-on|Signed-off-by|Acked-by"
    r"|Tested-by|Reported-by|Suggested-by|Co-authored-by|Helped-by|Cc|Closes|Change-Id|Applied-Upstream"
    r"|Author|From|Date|Subject|Description|Fixes|Link|Gbp-Pq|Patch-Name|X-[\w-]+)\s*:", re.I)
CREDIT_RE = re.compile(r"^\s*(?:thanks|thank you)\b|\b(?:patch|reported|written|suggested|contributed|"
                       r"provided|found|tested) (?:by|from)\b|\(cherry picked from", re.I)
URL_RE = re.compile(r"<?\b(?:https?|ftp)://[^\s>]+>?")  # a link is never in the diff, so never in a label
SIGNATURE_RE = re.compile(r"^\s*--\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\s*$")  # "-- Matthias": a name
ADDRESS_RE = re.compile(r"(?:[\w.'-]+ ){0,3}<[^<>\s]+@[^<>\s]+>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
WS_RE = re.compile(r"\s+")
PUNCT_GAP_RE = re.compile(r"[\s,;:]+([.,;:!?])(?=\s|$)")  # not ".pc" or "./configure"

# Imperative verbs a subject may start with; their -s/-ed/-ing forms come from inflect().
VERBS = (
    "accept add adjust align allow apply avoid backport build bump call change check clarify clean cleanup "
    "close convert copy correct create declare default define delete deprecate detect disable document drop "
    "enable ensure escape exclude explain export expose extend fall fix force free generate guard handle hide "
    "honor honour ignore implement import improve include increase decrease initialize initialise install "
    "introduce keep let limit link load lower make mark mention merge migrate modernize move note open "
    "optimize optimise pass patch port prefer prepare prevent print protect provide pull quote raise read "
    "rebuild recognize recognise reduce refactor refresh reject release reload remove rename reorder replace "
    "report require reset resolve respect restore restrict return reuse revert rewrite rework run save "
    "search send separate set show silence simplify skip sort specify split start stop strip support "
    "suppress switch sync teach test tidy treat trim try tweak unify update upgrade use validate verify "
    "wait warn work wrap write "
    "abort adapt annotate append bring canonicalize canonicalise clear comment compile compute configure "
    "deduplicate degrade delay derive destroy discard display downgrade dump ease eliminate emit encode "
    "decode enhance exit expect extract factor fetch fill filter find flush format get give hardcode hook "
    "insert invoke isolate join kill list lock log look map mask match normalize normalise omit override "
    "parse pin poll postpone prepend preserve probe process propagate put query redirect refuse register "
    "regenerate reintroduce relax relocate request reserve retry reverse reword sanitize sanitise scan "
    "select shorten shrink sign store stub substitute suggest tell terminate toggle track translate "
    "truncate turn undo unlock unmap unset widen zero").split()
DOUBLED = {"drop", "skip", "stop", "strip", "wrap", "trim", "plug", "ship", "zip", "pad", "tag", "let", "set", "log",
           "pin", "map", "unmap"}
# An adverb before the verb keeps a subject imperative ("Always use bash", "Only build docs once").
ADVERBS = {"always", "never", "only", "also", "explicitly", "correctly", "properly", "temporarily",
           "partially", "consistently", "silently", "unconditionally", "automatically", "just", "really",
           "please", "actually", "still", "even", "further", "finally", "completely", "mostly", "now"}
IRREGULAR = {"made": "make", "makes": "make", "making": "make", "wrote": "write", "written": "write",
             "ran": "run", "running": "run", "kept": "keep", "built": "build", "sent": "send", "did": "do",
             "does": "do", "doing": "do", "fell": "fall", "reset": "reset", "split": "split", "set": "set",
             "let": "let", "read": "read", "rewrote": "rewrite", "rewritten": "rewrite", "hid": "hide",
             "hidden": "hide", "don't": "don't", "do": "do"}


def inflect(verb: str) -> set[str]:
    """A regular verb's -s, -ed and -ing forms (clean: cleans, cleaned, cleaning)."""
    stem = verb + verb[-1] if verb in DOUBLED else verb
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return {verb[:-1] + "ies", verb[:-1] + "ied", verb + "ing"}
    if verb.endswith("e"):
        return {verb + "s", verb + "d", verb[:-1] + "ing"}
    es = verb + ("es" if verb.endswith(("s", "x", "z", "ch", "sh")) else "s")
    return {es, stem + "ed", stem + "ing"}


VERB_FORMS: dict[str, str] = {form: v for v in VERBS for form in inflect(v)} | {v: v for v in VERBS} | IRREGULAR


@dataclass
class Normalised:
    scope: str | None
    subject: str
    body: str | None
    reasons: list[str] = field(default_factory=list)  # why the result cannot meet the rules


def _base(word: str) -> str:
    word = word.lower()
    return word[3:] if word.startswith("re-") and len(word) > 5 else word  # re-enable, re-add


def is_imperative(subject: str) -> bool:
    words = subject.split(maxsplit=2)
    if len(words) > 1 and words[0].lower() in ADVERBS:
        words = words[1:]
    first = _base(words[0]) if words else ""
    return VERB_FORMS.get(first) == first


def _scope(component: str, diff_text: str) -> str | None:
    """The component as a scope when the diff shows it (src/udev.c: -> udev)."""
    lowered = diff_text.lower()
    for cand in (component.lower(), component.lower().rsplit("/", 1)[-1].split(".", 1)[0]):
        if len(cand) >= 2 and re.match(SCOPE_PATTERN, cand) and len(cand) <= 32 and cand in lowered:
            return cand
    return None


# "(thanks to ...)", and the "( )" an address leaves; a call's "()" stays.
CREDIT_PAREN_RE = re.compile(r"\s*\([^()]*\b(?:thanks|thx|patch by|reported by)\b[^()]*\)|\s+\(\s*\)", re.I)


def normalise_subject(line: str, diff_text: str) -> tuple[str | None, str]:
    subject = PATCH_TAG_RE.sub("", CREDIT_PAREN_RE.sub("", ADDRESS_RE.sub("", line))).strip()
    subject = BULLET_RE.sub("", subject)
    scope = None
    m = TYPE_PREFIX_RE.match(subject)  # "fix(udev): ..." already written the contract's way
    if m:
        scope = _scope(m.group(1), diff_text) if m.group(1) else None
        subject = subject[m.end():]
    else:
        # "net: mana: Fix ...", "[clang] Fix ...": every leading component goes; the last one the
        # diff shows (the most specific) is the scope.
        while m := (COMPONENT_RE.match(subject) or TAG_RE.match(subject)):
            scope = _scope(m.group(1), diff_text) or scope
            subject = subject[m.end():]
    subject = WS_RE.sub(" ", subject).strip().rstrip(".").rstrip()
    words = subject.split(" ", 1)
    if words[0]:
        low = words[0].lower()
        prefix = low[:3] if _base(low) != low else ""  # re-enables -> re-enable
        verb = VERB_FORMS.get(low[len(prefix):])
        if verb is not None:
            words[0] = prefix + verb
        if not re.search(r"[_/.()]|[a-z][A-Z]", words[0]):  # an identifier keeps its case
            words[0] = words[0][:1].upper() + words[0][1:]
    return scope, " ".join(words).strip()


def normalise_body(paragraphs: list[str]) -> str | None:
    kept = []
    for para in paragraphs:
        # a line backfill redacted held a secret or a person ("[REDACTED:person]"): not label text
        lines = [ln for ln in para.splitlines() if not TRAILER_RE.match(ln) and not CREDIT_RE.search(ln)
                 and not SIGNATURE_RE.match(ln) and "[REDACTED" not in ln]
        text = WS_RE.sub(" ", ADDRESS_RE.sub("", URL_RE.sub("", " ".join(lines)))).strip()
        text = PUNCT_GAP_RE.sub(r"\1", text)  # "see <a@b.org>." left "see ." behind
        if text:
            kept.append(text)
    sentences = SENTENCE_END_RE.split(" ".join(kept)) if kept else []
    body: list[str] = []
    for sentence in sentences:
        candidate = " ".join(body + [sentence])
        if len(candidate.split()) > BODY_WORDS or len(candidate) > BODY_MAX:
            break
        body.append(sentence)
    return " ".join(body) or None


def normalise(message: str | None, diff_text: str) -> Normalised:
    """(scope, subject, body) from the author's message, and the reasons it cannot meet the
    rules: message_empty, subject_too_long, subject_not_imperative."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", (message or "").strip()) if p.strip()]
    if not paragraphs:
        return Normalised(None, "", None, ["message_empty"])
    scope, subject = normalise_subject(WS_RE.sub(" ", paragraphs[0]), diff_text)
    reasons = []
    if not subject:
        reasons.append("message_empty")
    elif len(subject) > SUBJECT_MAX:
        reasons.append("subject_too_long")
    if subject and not is_imperative(subject):
        reasons.append("subject_not_imperative")
    return Normalised(scope, subject, normalise_body(paragraphs[1:]), reasons)


def cut_subject(subject: str) -> str:
    """A subject over the limit cut at a word boundary, so the label stays schema-valid (its
    record goes to review all the same: style.py's style_message_not_normalised)."""
    if len(subject) <= SUBJECT_MAX:
        return subject
    cut = subject[:SUBJECT_MAX + 1].rsplit(" ", 1)[0] if " " in subject[:SUBJECT_MAX + 1] else ""
    return (cut or subject[:SUBJECT_MAX]).rstrip(" .,;:")


def fallback_subject(paths: list[str]) -> str:
    """The subject of a record without a usable message: what the diff's first file is."""
    name = paths[0].rsplit("/", 1)[-1] if paths else "files"
    return cut_subject(f"Update {name}")
