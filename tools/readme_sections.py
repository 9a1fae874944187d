"""README figures rendered from the report JSONs they describe, never typed by hand.

Each section sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` in README.md and is
written by the command that writes its report (`make bench`, `make faults`), or by

    python -m tools.readme_sections [NAME ...]     # rewrite sections from the committed reports
    python -m tools.readme_sections --check        # exit 1 naming each section that differs

tests/test_readme_figures.py fails when a committed section differs from its rendering.
Sections: bench and stages (reports/bench.json), faults (reports/faults.json), mutation
(reports/mutation.json), and the figures of the task the README describes (TASK): labeler,
eval and leakage (reports/<task>/labeler.json, metrics.json, leakage.json; tuneforge.names).
Figures of earlier releases (the labeler at `v2`, kind agreement at v1/v2/v3/v5) are read from
that release's commit in RELEASES with `git show`, so they too come from the report they
describe; releases up to v7 predate the per-task layout and hold those reports at reports/X.json,
so a release's report is read from the task's path, else from the v7 one.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tuneforge import config, names
from tuneforge.gates import LABELER_GATE_SUBSETS
from tuneforge.io import write_text
from tuneforge.releases import RELEASES, read_at, release_commits
from tuneforge.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TASK = "changelog-actions"  # the task whose figures the README shows
_PATHS = names.TaskPaths.for_task(TASK)
# a task report, then where releases up to v7 (one task, no reports/<task>/) committed it
LABELER = (str(_PATHS.labeler_report), "reports/labeler.json")
RULE2_AUDIT = "reports/changelog-actions/by-hand/s30-rule2-audit.json"  # python -m tools.rule_audit
KIND_AUDIT = "reports/changelog-actions/by-hand/s31-kind-audit.json"  # python -m tools.kind_audit
METRICS = (str(_PATHS.metrics), "reports/metrics.json")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _span(text: str, name: str, where: Path | str) -> tuple[int, int]:
    """Offsets of the body between NAME's markers; a clear error when they are missing,
    repeated or out of order."""
    start, end = markers(name)
    for m in (start, end):
        if text.count(m) != 1:
            raise ValueError(f"{where}: marker {m} appears {text.count(m)} times, expected once")
    i, j = text.index(start) + len(start), text.index(end)
    if j < i:
        line = text.count("\n", 0, j) + 1
        raise ValueError(f"{where}:{line}: {end} comes before {start}")
    return i, j


def section(text: str, name: str, where: Path | str = "README.md") -> str:
    """The body between NAME's markers, without the newlines that frame it."""
    i, j = _span(text, name, where)
    return text[i:j].strip("\n")


def replace(text: str, name: str, body: str, where: Path | str = "README.md") -> str:
    i, j = _span(text, name, where)
    return f"{text[:i]}\n{body}\n{text[j:]}"


def _report(root: Path, rel: str) -> dict:
    path = root / rel
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the report: {e}") from e


def release_report(root: Path, version: str, rels: tuple[str, ...]) -> dict:
    """A report as committed at a release listed in RELEASES (`<tag> <commit>` lines): read
    with `git show`, so no tag and no checkout is needed. `rels`: where the report may sit, the
    current layout's path first; the first one the release's commit holds is read."""
    commits = release_commits(root)
    if version not in commits:
        raise ValueError(f"{root / RELEASES}: no release {version}")
    errors = []
    for rel in rels:
        text, why = read_at(version, rel, root)
        if text is not None:
            return json.loads(text)
        errors.append(why)
    raise ValueError(f"{' or '.join(rels)} at {version} ({commits[version][:12]}): {'; '.join(errors)}")


# ---------------------------------------------------------------- renderers

def render_bench(root: Path) -> str:
    from tools.bench.report import table  # bench imports this module: import late

    return table(_report(root, "reports/bench.json"))


# the fault kinds build_cases crafts, in words (keys: the report's by_category)
FAULT_WORDS = {
    "binary": "binary", "confusables": "Unicode confusables", "deep_nesting": "deep nesting",
    "duplicates": "duplicates", "empty": "empty files", "gzip": "bad/truncated gzip",
    "huge_line": "huge lines", "invalid_utf8": "invalid UTF-8", "line_endings": "CRLF/CR/mixed endings",
    "malformed_markup": "malformed markup", "nul_bytes": "NUL bytes", "prompt_injection": "prompt injection",
}


def _remote_words(r: dict) -> str:
    if r["pull_rc"] == 0 and r["corrupt_file_checked_out"] and r["status_clean"]:
        return "`dvc pull` checks the corrupt file out and `dvc status` is clean"
    if r["pull_rc"] != 0 and not r["file_checked_out"] and not r["corrupt_object_in_local_cache"]:
        return "the pull fails and nothing is checked out"
    return (f"`dvc pull` exits {r['pull_rc']}, corrupt file checked out: {r['corrupt_file_checked_out']}, "
            f"`dvc status` clean: {r['status_clean']}")


def render_faults(root: Path) -> str:
    from tools.faults.report import failures  # faults imports this module: import late
    from tools.faults.roots import DATA_STAGES

    rep = _report(root, "reports/faults.json")
    d = rep["details"]
    bad, sec, kill, leak, remote = (d[k] for k in ("bad_inputs", "secrets", "kill", "leakage", "remote"))
    machine = rep.get("machine") or {}
    cores = f" on {machine['cores']} cores" if machine.get("cores") else ""
    dirty = " with uncommitted changes" if rep["working_tree_dirty"] else ""
    head = (f"Measured by `make faults` ({rep['profile']} profile, seed {rep['seed']}) at "
            f"`{rep['git_revision'][:7]}`{dirty}: {rep['seconds'] / 60:.1f} min{cores}.")
    q = {k.split(":", 1)[1]: n for k, n in bad["quarantined_by_reason"].items() if k.startswith("backfill:")}
    kinds = ", ".join(FAULT_WORDS.get(k, k) for k in bad["by_category"])
    rows = [(f"bad inputs: {len(bad['by_format'])} formats x {len(bad['by_category'])} fault kinds ({kinds}), "
             f"{bad['bytes'] / 1e6:.0f} MB",
             f"{bad['cases']} cases, {rep['crashes']} crashes, {rep['lost_records']} lost records of "
             f"{bad['records_checked']:,} traced from source line to export, {bad['problem_count']} quarantine "
             f"rows without a reason, file or line; backfill quarantined "
             + ", ".join(f"{n} `{k}`" for k, n in sorted(q.items(), key=lambda kv: -kv[1])))]
    files = sum(sec["files_scanned"].values())
    where = ("exports, receipts, logs, quarantine, DVC cache, GGUF bytes and metadata, Modelfiles, registry"
             if sec["files_scanned"].get("gguf") else "exports, receipts, logs, quarantine, DVC cache; no model "
             "artifact, the model half did not run")
    rows.append((f"secrets: {rep['secret_kinds']} kinds, {sec['planted']} placements in source files",
                 f"{rep['leaked_secrets']} found in {files} produced files ({where}) or {sec['tracked_files_checked']} "
                 f"tracked files; backfill's receipt counts {sec['redactions_in_backfill_receipt']} redactions"))
    by = kill["by_stage"]
    n_data, n_dvc = sum(by.get(s, 0) for s in DATA_STAGES), by.get("dvc repro", 0)
    rows.append((f"kill -9 at seeded moments: {n_data} in data stages, {n_dvc} of a whole `dvc repro`, "
                 f"{kill['points'] - n_data - n_dvc} in model stages",
                 f"{kill['points']} points, {rep['nonidentical_reruns']} non-identical reruns, "
                 f"{kill['partial_files_in_dvc_cache']} partial files in the DVC cache; "
                 f"{kill['killed_mid_write']} kill{'' if kill['killed_mid_write'] == 1 else 's'} landed mid-write, "
                 f"{kill['stray_temp_files_after_rerun']} temp files left after the reruns"))
    probe, real = leak["probe"], leak.get("real_build")
    real_words = (f"{real['exact_count'] + real['near_count']} of {real['rows']:,} rows of the default build"
                  if real else "the default build's exports were not there to check")
    measure = leak.get("measure", "3-shingle Jaccard")  # reports written before issue 17 lack the key
    planted = leak.get("planted_words", "verbatim, upper-cased, full-width, one word changed")
    rows.append((f"gold leakage into train/valid (normalised hash, {measure} >= {leak['threshold']})",
                 f"{probe['exact_count'] + probe['near_count']} of {probe['rows']:,} rows of a build whose sources "
                 f"also hold {leak['planted_gold']} gold rows ({planted}); {real_words}"))
    gates = d.get("gates_and_pins")
    rows.append(("gates and pins (failing model never promoted; tampered or unpinned GGUF refused by register, "
                 "eval, eval by hand)",
                 f"not run: {rep['model_half']}" if gates is None else
                 f"{len(gates['checks']) - len(gates['failed'])} of {len(gates['checks'])} checks hold"
                 + (f"; failed: {', '.join(gates['failed'])}" if gates["failed"] else "")))
    rows.append(("a corrupted object in the local remote",
                 f"with DVC's defaults {_remote_words(remote['default'])}; with the remote's `verify = true` "
                 f"{_remote_words(remote['verify'])}"))
    fails = failures(rep)
    verdict = ("Every check held (`make faults` exits 0 only then)." if not fails else
               "Failed (`make faults` exits 1): " + "; ".join(fails) + ".")
    return "\n".join([head, "", "| check | result |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
                      verdict])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_labeler(root: Path) -> str:
    rep = _report(root, LABELER[0])
    v2 = release_report(root, "v2", LABELER)
    hint, untouched = rep["with_hint"], rep["gold_subsets"]["untouched"]
    tuning, human = rep["gold_subsets"]["tuning"], rep["human_labels"]
    agree = round(hint["kind_agreement"] * rep["gold_records"])
    return (
        f"The rule labeler (the default teacher) against the {rep['gold_records']}-row gold holdout\n"
        f"(`{LABELER[0]}`): kind agreement {_pct(hint['kind_agreement'])}, {agree} rows "
        f"({_pct(v2['with_hint']['kind_agreement'])} at `v2`),\nseverity {_pct(hint['severity_agreement'])}, "
        f"macro-F1 {hint['macro_f1']:.3f}. It was tuned by reading its errors on {tuning['n']} of the gold\n"
        f"rows and on the first 240 hand-labeled training rows; on all {human['n']} of those (the rest drawn\n"
        f"mostly where it is least reliable, never read while tuning) it agrees on kind "
        f"{_pct(human['kind_agreement'])}. "
        f"On the {untouched['n']} gold rows never read while tuning it scores "
        f"{_pct(untouched['kind_agreement'])}\n({_pct(v2['gold_subsets']['untouched']['kind_agreement'])} at "
        f"`v2`) — that is the honest estimate for unseen entries drawn as the gold was (30 per rule-labeler "
        f"guess,\nso the rare kinds weigh as much as the common ones). The gap to the untouched rows says the "
        f"rules still fit\nwhat was read. More hand labels or a teacher endpoint (`evidence.teacher`) are the way "
        f"up, not more regexes."
        + _kind_audit(root) + _rule2_audit(root))


def _kind_audit(root: Path) -> str:
    """tools.kind_audit's blind audit of the accepted rule labels training reads, when it was run."""
    path = root / KIND_AUDIT
    if not path.is_file():
        return ""
    a = _report(root, KIND_AUDIT)
    kinds = a["kinds"]
    per_kind = ", ".join(f"{k} {_pct(v['precision'])} ({_ci95(v)})"
                         for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["precision"]))
    d = a["double_labeled"]
    return (
        f"\n\nThe labels training reads are its accepted ones (score's `accepted` records, label source "
        f"`rules`), and\nthose are right more often: `python -m tools.kind_audit` (`{KIND_AUDIT}`) drew "
        f"{a['rows'] // len(kinds)} of them per\nkind, each labeled blind from the contract by an annotator "
        f"who never saw the labeler's answer (a blind {d['rows']}\nlabeled twice: kind kappa "
        f"{d['kind_kappa']:.2f}), and counts how often the annotator gives the labeler's kind:\n{per_kind}."
        f"\nWeighted by each kind's share of the "
        f"{sum(a['population'].values()):,} accepted rule labels, {_pct(a['overall_precision_weighted'])} of "
        f"them name the kind\nthe annotators would. Those {a['rows']} rows are hand labels now (dataset v6).")


def _ci95(share: dict) -> str:
    return f"{share['ci95'][0]:.2f}-{share['ci95'][1]:.2f}"


def _rule2_audit(root: Path) -> str:
    """tools.rule_audit's blind audit of the labeler's rule-2 breaking labels, when it was run."""
    path = root / RULE2_AUDIT
    if not path.is_file():
        return ""
    a = _report(root, RULE2_AUDIT)
    lead, other = a["strata"]["leading"], a["strata"]["other"]
    kappas = " and ".join(f"{b['kind_kappa']:.2f}" for b in a["batches"].values())
    rows = sum(b["rows"] for b in a["batches"].values())
    return (
        f"\n\nOver all its `breaking` labels by rule 2 (a removal or rename), those score sends to review included, "
        f"it is\nright about {_pct(a['precision_weighted'])} of the time:\n`python -m tools.rule_audit` "
        f"(`{RULE2_AUDIT}`) over {rows} of those records, each labeled blind "
        f"by two\nannotators from the contract, never the labeler's answer (kind kappa {kappas} in its two "
        f"batches),\ncounts the rows both call breaking: {lead['breaking']} of {lead['consensus_rows']} "
        f"({_pct(lead['precision'])}, "
        f"{_ci95(lead)}) where the entry leads with the removal or rename,\n{other['breaking']} of "
        f"{other['consensus_rows']} ({_pct(other['precision'])}, {_ci95(other)}) elsewhere, weighted by the strata's "
        f"shares of the {sum(a['population'].values())} such\nrecords. The rest are mostly internal removals "
        f"(unused code, a dependency, tests: rule 8), fixes\nand docs. A narrower cue tuned on the first batch "
        f"read no better on the second (branch\n`labeler-rule2`, not merged).")


def _gb(mb: float) -> str:
    return f"{mb / 1000:.2f} GB" if mb < 1000 else f"{mb / 1000:.1f} GB"


def render_stages(root: Path) -> str:
    """The build section of reports/bench.json: wall time and peak RSS per stage."""
    from tools.verify_repro import stage_rank

    rep = _report(root, "reports/bench.json")
    b = rep["sections"]["build"]
    machine = b.get("machine") or rep["machine"]  # the section's own (bench.report.measured_on)
    order = sorted(b["full_build_s"], key=stage_rank(root))
    total = round(b["full_build_total_s"])
    same = b["bit_identical"]
    return "\n".join([
        f"Wall time per stage of the default build (a clean clone built by `make bench`, {machine['cores']} "
        f"cores,\n{rep['ran']['build']}; `reports/bench.json`), {total // 60} min {total % 60} s for the whole "
        f"`dvc repro`, {same['identical']} of its\n{same['compared']} outputs bit-identical to the committed "
        f"`dvc.lock`:", "",
        "| " + " | ".join(order) + " |", "|" + "---|" * len(order),
        "| " + " | ".join(f"{b['full_build_s'][s]:.0f} s" for s in order) + " |", "",
        textwrap.fill("Peak RSS per stage, same run: " + ", ".join(f"{s} {_gb(b['peak_rss_mb'][s])}"
                                                                   for s in order) + ".", 88)])


# the model table: kind agreement at these releases (their committed metrics), then HEAD's figures
EVAL_RELEASES = ("v1", "v2", "v3", "v5")
EVAL_MODELS = ("base", "Q8_0", "Q6_K", "Q4_K_M")


def render_eval(root: Path) -> str:
    head = _report(root, METRICS[0])
    old = {v: release_report(root, v, METRICS) for v in EVAL_RELEASES}
    base = config.load(root / config.PARAMS).base.name
    cols = [f"{v} kind" for v in EVAL_RELEASES] + ["HEAD kind", "HEAD severity", "HEAD parse rate",
                                                  "HEAD macro-F1", "HEAD STYLE-clean"]
    rows = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    ladder = config.load(root / config.PARAMS).quantize.types
    # the releases' ladder and today's (quantize.types changes between builds); "-" where one lacks it
    for m in dict.fromkeys([*EVAL_MODELS, *ladder]):
        name = f"base {base} (f16 GGUF, same grammar)" if m == "base" else f"fine-tuned {m}"
        cells = [f"{old[v][m]['kind_agreement']:.3f}" if m in old[v] else "-" for v in EVAL_RELEASES]
        h = head.get(m)
        cells += ["-"] * 5 if h is None else [
            f"{h['kind_agreement']:.3f}", f"{h['severity_agreement']:.3f}", f"{h['parse_rate']:.3f}",
            f"{h['macro_f1']:.3f}", f"{h['style_clean_rate']:.3f}" if "style_clean_rate" in h else "-"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def render_leakage(root: Path) -> str:
    """export's gold decontamination (reports/<task>/leakage.json)."""
    s = _report(root, str(_PATHS.leakage))["summary"]
    rm = s["removed"]
    return (
        f"| gold rows | training rows after the filter | removed: exact | near (edit) | near (contained) "
        f"| synthetic | threshold | closest row kept | margin |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {s['gold']} | {s['sft_rows']:,} | {rm['exact']} | {rm['near_edit']} | {rm['near_contained']} "
        f"| {rm['synthetic']} | {s['threshold']} | {s['max_kept_similarity']} | {s['margin']} |")


COMMITS = names.TaskPaths.for_task("commit-messages")


def render_harvest(root: Path) -> str:
    """make harvest-patches (reports/harvest-patches.json) and what backfill made of its snapshot
    (reports/commit-messages/receipts/backfill.json)."""
    h = _report(root, "reports/harvest-patches.json")
    b = _report(root, str(COMMITS.receipt("backfill")))["counts"]
    fails = ", ".join(f"{n} {why}" for why, n in sorted(h["failure_counts"].items()))
    kinds = h["patches"]["kinds_kept"]
    quarantined = ", ".join(f"{n} {k.removeprefix('quarantine_')}" for k, n in sorted(b["extra"].items())
                            if k.startswith("quarantine_"))
    return textwrap.fill(
        f"The committed snapshot ({h['suite']}, {h['packages']} installed source packages): "
        f"{h['debian_tarballs']} Debian tarballs came down ({h['debian_tarball_bytes'] / 1e6:.1f} MB; "
        f"{len(h['fallbacks'])} at the suite's current version), {len(h['no_debian_tarball'])} packages have "
        f"none, {fails}. {h['patches']['found']:,} patches in "
        f"{h['packages_with_patches']} packages; {h['patches']['kept']:,} kept "
        f"({h['patches']['skipped_over_patch_cap']} over {h['max_patch_bytes']:,} bytes skipped): "
        f"{kinds['format-patch']:,} in format-patch form, {kinds['dep3']} with DEP-3 headers, {kinds['bare']} "
        f"bare; {h['snapshot']['bytes'] / 1e6:.2f} MB compressed. Backfill reads {b['records_in']:,} units "
        f"from them: {b['records_out']:,} (diff, message) pairs, {b['deduplicated']} duplicates, "
        f"{b['quarantined']} quarantined ({quarantined}); {b['extra'].get('redacted_person', 0)} names "
        f"with addresses and {b['extra']['redactions'] - b['extra'].get('redacted_person', 0)} secrets "
        "redacted.", width=92)


def _num(v: float | None) -> str:
    """A rate or agreement in a table cell: three places, or n/a where the metric had no rows."""
    return "n/a" if v is None else f"{v:.3f}"


def render_commits(root: Path) -> str:
    """The commit-messages task's model table (reports/commit-messages/metrics.json: the base
    and every quantisation, the one eval's verdict promoted marked), its rule labeler on the
    same gold (labeler.json) and the gold's composition (gold.json)."""
    m = _report(root, str(COMMITS.metrics))
    lab = _report(root, str(COMMITS.labeler_report))
    gold = _report(root, "reports/commit-messages/gold.json")
    base = config.load(root / config.PARAMS).base.name
    cols = ("type (95% CI)", "breaking", "parse rate", "macro-F1", "subject chrF", "subject exact",
            "invented identifiers", "ignore P / R", "junk left out", "scope agreement", "STYLE-clean")
    rows = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    # the base (when eval ran it), then every quantisation eval ran on all rows, largest first (the
    # ladder's names change with the params: a fixed list once lost the promoted Q6_K-imat row
    # without a word); the converter's output and the HF models answer only the parity subset
    n_eval = max(h["n"] for h in m.values())
    ladder = sorted((k for k, h in m.items() if k != "base" and "size_mb" in h and h["n"] == n_eval),
                    key=lambda k: (-m[k]["size_mb"], k))
    promoted = _report(root, str(COMMITS.verdict)).get("promoted")
    for key in (["base"] if "base" in m else []) + ladder:
        h = m[key]
        name = (f"base {base} (f16 GGUF, same grammar)" if key == "base"
                else f"fine-tuned {key}{' (promoted)' if key == promoted else ''}")
        ci = f"{_num(h['type_agreement'])} ({h['type_agreement_ci95_low']:.2f}-{h['type_agreement_ci95_high']:.2f})"
        rows.append(f"| {name} | {ci} | {_num(h['breaking_agreement'])} | {_num(h['parse_rate'])} "
                    f"| {_num(h['macro_f1'])} "
                    f"| {h['subject_chrf']:.1f} | {_num(h['subject_exact'])} | {_num(h['invented_identifier_share'])} "
                    f"| {_num(h['ignore_precision'])} / {_num(h['ignore_recall'])} | {_num(h['junk_left_out_share'])} "
                    f"| {_num(h['scope_agreement'])} | {_num(h['style_clean_share'])} |")
    w = lab["with_hint"]
    agree = gold["agreement"]
    return (
        "\n".join(rows) + "\n\n"
        f"{n_eval} gold rows (`eval.holdout_limit`; {m[ladder[0]]['junk_rows']} of them with injected junk). The rule "
        f"labeler that wrote the training types, on the {lab['gold_records']} gold rows whose diff it saw unchanged: "
        f"type agreement {_num(w['type_agreement'])}, breaking {_num(w['breaking_agreement'])} (on the "
        f"{lab['gold_subsets']['untouched']['n']} rows never inspected while it was tuned: "
        f"{_num(lab['gold_subsets']['untouched']['type_agreement'])}). Gold: {gold['rows']} rows, "
        f"{gold['with_junk']} with junk, types " + ", ".join(f"{k} {v}" for k, v in gold["types"].items())
        + f"; {gold['double_labeled']} rows labeled twice agree on type {_num(agree['type'])}, breaking "
        f"{_num(agree['breaking'])}, scope {_num(agree['scope'])}.")


def render_commits_byhand(root: Path) -> str:
    """The commit-messages models on every gold row, by hand (reports/commit-messages/by-hand/
    <build>-<quant>-whole-holdout.json, the JSON `python -m tuneforge.evaluate` prints), each beside
    the rule labeler on the same rows. Eval's 40 rows are a hash-ordered sample of these."""
    rows = ["| build | model | n | type (95% CI) | breaking | macro-F1 | subject chrF | invented identifiers "
            "| scope agreement | looped | rule labeler, same rows: type | only the model right / only the labeler "
            "(p labeler better) |", "|---|" + "---|" * 11]
    model_name = config.load(root / config.PARAMS).tasks["commit-messages"].model_name
    paths = sorted((root / COMMITS.reports / "by-hand").glob("*-whole-holdout.json"))
    if not paths:
        raise ValueError(f"README section byhand-commits: no {COMMITS.reports}/by-hand/*-whole-holdout.json "
                         "(python -m tuneforge.evaluate --task commit-messages ... > that file)")
    for path in paths:
        report = _report(root, str(path.relative_to(root)))
        lab = report[names.RULE_LABELER]
        for model, h in report.items():
            if model == names.RULE_LABELER:
                continue
            quant = model.removeprefix(f"{model_name}-")  # the GGUF's stem; the file is <build>-<quant>-...
            build = path.stem.removesuffix(f"-{quant}-whole-holdout")
            vs = h["vs_labeler"]["all"]
            rows.append(
                f"| {build} | {quant} | {h['n']} | {_num(h['type_agreement'])} ({h['type_agreement_ci95_low']:.2f}-"
                f"{h['type_agreement_ci95_high']:.2f}) | {_num(h['breaking_agreement'])} | {_num(h['macro_f1'])} "
                f"| {h['subject_chrf']:.1f} | {_num(h['invented_identifier_share'])} | {_num(h['scope_agreement'])} "
                f"| {h['closed_by_decoder']} | {_num(lab['type_agreement'])} ({lab['type_agreement_ci95_low']:.2f}-"
                f"{lab['type_agreement_ci95_high']:.2f}) | {vs['model_only']} / {vs['labeler_only']} "
                f"({vs['p_labeler_better']:.2g}) |")
    return "\n".join(rows)


def render_confirmation(root: Path) -> str:
    """Each task's promotion candidates on eval.confirm_rows (metrics.json <key>.confirmation,
    verdict.json): smallest first, the first that passes promoted."""
    rows = ["| task | candidate | rows | class agreement (95% CI) | second field | parse rate | looped "
            "| invented identifiers | steered | vs the rule labeler, untouched / unseen & untouched rows: "
            "model, labeler (p) | passed |", "|---|" + "---|" * 10]

    def versus(h: dict) -> str:  # the rows the labeler gate reads (tuneforge.gates.labeler_behind)
        vs = h.get("vs_labeler", {})
        return " / ".join(f"{_num(vs[k]['model'])}, {_num(vs[k]['labeler'])} (n {vs[k]['n']}, p "
                          f"{vs[k]['p_labeler_better']:.2g})" if vs.get(k, {}).get("n") else "-"
                          for k in LABELER_GATE_SUBSETS)
    def rows_cell(h: dict) -> str:  # a candidate over a count gate is decoded no further (stages/eval.py)
        if h.get("stopped_by"):
            return f"{h['n']} of {h['confirm_rows']} (stopped: {'; '.join(h['stopped_by'])})"
        return str(h["n"])
    outcome = []
    for task in config.load(root / config.PARAMS).tasks:
        paths, t = names.TaskPaths.for_task(task), get_task(task)
        m, verdict = _report(root, str(paths.metrics)), _report(root, str(paths.verdict))
        c, s = t.fields
        for key in (k for k in m if "confirmation" in m[k]):
            h = m[key]["confirmation"]
            name = f"{key} (promoted)" if key == verdict.get("promoted") else key
            rows.append(
                f"| {task} | {name} | {rows_cell(h)} | {_num(h[f'{c}_agreement'])} ({h[f'{c}_agreement_ci95_low']:.2f}-"
                f"{h[f'{c}_agreement_ci95_high']:.2f}) {c} | {_num(h[f'{s}_agreement'])} {s} | {_num(h['parse_rate'])} "
                f"| {h['closed_by_decoder']} | {_num(h.get('invented_identifier_share'))} "
                f"| {_num(h.get('steered_rate'))} | {versus(h)} | {'yes' if h['passed_gates'] else 'no'} |")
        if "confirm_rows" not in verdict:  # a verdict from before confirmation (schema 2)
            rows.append(f"| {task} | not confirmed: its verdict predates eval.confirm_rows | | | | | | | | | |")
        elif not any("confirmation" in v for v in m.values()):
            rows.append(f"| {task} | none: no candidate passed on eval's sample | | | | | | | | | |")
        outcome.append(f"{task}: release {verdict['release']}, "
                       + (f"promoted {verdict['promoted']}" if verdict.get("promoted") else "nothing promoted"))
    return "\n".join(rows) + "\n\nVerdicts (`reports/<task>/eval/verdict.json`): " + "; ".join(outcome) + "."


def build_receipts(root: Path) -> dict[str | None, dict[str, Path]]:
    """Every stage's receipt, by task (None: the stages every task shares), from dvc.yaml's
    own stage list: a stage added there is counted without touching this file."""
    from tools.verify_repro import pipeline_stages

    out: dict[str | None, dict[str, Path]] = {}
    for name in pipeline_stages(root):
        stage, _, task = name.partition("@")
        path = names.TaskPaths.for_task(task).receipt(stage) if task else names.BASE_RECEIPT.parent / f"{stage}.json"
        out.setdefault(task or None, {})[stage] = path
    return out


def render_buildtime(root: Path) -> str:
    """Each task's build time from its stages' receipts (`duration_s` of each stage's last
    run) and the shared stages': what the last `dvc repro` of the committed build took."""
    receipts = {task: {s: _report(root, str(p)) for s, p in stages.items()}
                for task, stages in build_receipts(root).items()}
    seconds = {task: {s: r["duration_s"] for s, r in d.items()} for task, d in receipts.items()}
    shared = seconds.pop(None, {})
    rows = ["| task | build | train | eval | fidelity checks inside eval (share of the rest of eval) | other stages |",
            "|---|---|---|---|---|---|"]
    total = sum(shared.values())
    warm = []  # tasks whose eval answered mostly from the memo an earlier run left
    for task, d in seconds.items():
        spent = sum(d.values())
        total += spent
        # an eval that answered from its memo took a fraction of a cold one: say what it decoded
        extra = receipts[task]["eval"]["counts"]["extra"]
        decoded, forced = extra.get("decoded", 0), extra.get("fidelity_forced", 0)
        if decoded < extra.get("cache_hits", 0):
            warm.append(task)
        fid = extra["fidelity_ms"] / 1000
        share = (f"{fid / (d['eval'] - fid):.0%}; this eval decoded {decoded} answers, {forced} forced passes"
                 if decoded else f"no share: this eval decoded nothing (its memo answered), so its {forced} forced "
                 "passes had no answer's context to reuse")
        rows.append(f"| {task} | {spent / 60:.1f} min | {d['train']:.0f} s | {d['eval']:.0f} s "
                    f"| {fid:.0f} s ({share}) "
                    f"| {spent - d['train'] - d['eval']:.0f} s |")
    rows.append(f"| both, with the shared {', '.join(shared)} stage ({sum(shared.values()):.0f} s) "
                f"| {total / 60:.1f} min | | | | |")
    if warm:  # a rebuild that changed no model: not what a clean clone takes
        rows += ["", f"Not a cold build: eval of {' and '.join(warm)} took more answers from its memo than it "
                 "decoded (the models were unchanged), so these times are under a clean clone's; the bench "
                 "section's `full_build_s` is one."]
    from tools.bench.report import build_budget_met  # the bench's own test of the same target

    stage_s = {**shared, **{f"{s}@{task}": v for task, d in seconds.items() for s, v in d.items()}}
    # where the models were trained: the same build takes other times (and gives other bits) on
    # another matrix instruction set (train's receipt: what train.precision resolved to)
    trained = "; ".join(f"{task} in {r['train']['params']['resolved']['precision']} on "
                        f"{r['train']['params']['resolved']['matmul_isa']}"
                        for task, r in receipts.items() if task and r["train"]["params"].get("resolved"))
    rows += ["", f"Budget (15 min a task with the shared stages, 30 min in all, on 2 cores): "
             f"{'met' if build_budget_met(stage_s) else 'not met'}." + (f" Trained: {trained}." if trained else "")]
    return "\n".join(rows)


def render_fidelity(root: Path) -> str:
    """Each task's fidelity checks (eval's reports/<task>/fidelity.json): KL and top-1 agreement of every
    GGUF against the merged model, and the tokenizer round trip's counts."""
    rows = ["| task | GGUF | size MB | KL mean (bound) | KL p99 (bound) | top-1 | answer tokens | within bounds |",
            "|---|---|---|---|---|---|---|---|"]
    trips = []
    params = config.load(root / config.PARAMS)
    order = [params.convert.outtype, *params.quantize.types]  # the file's keys are sorted
    for task in params.tasks:
        report = _report(root, str(names.TaskPaths.for_task(task).fidelity))
        # entries an older build measured that today's ladder lacks go last
        ranked = sorted(report["models"].items(),
                        key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
        for key, v in ranked:
            rows.append(f"| {task} | {key} | {v['size_mb']} | {v['kl_mean']:.2g} ({v['max_kl_mean']:g}) "
                        f"| {v['kl_p99']:.2g} ({v['max_kl_p99']:g}) | {v['top1']:.4f} | {v['tokens']} "
                        f"| {'yes' if v['passed'] else 'no'} |")
        t = report["tokenizer"]
        trips.append(f"{task} {t['gold_texts']} gold + {t['train_texts']} training texts x {t['ggufs']} GGUFs")
    return "\n".join(rows) + "\n\nTokenizer round trip, every id equal: " + "; ".join(trips) + "."


def _ladder_agreement(path: Path, class_field: str) -> dict[str, float]:
    """eval's ladder.csv: model -> class agreement (kind, type)."""
    with open(path, newline="", encoding="utf-8") as f:
        return {r["model"]: float(r[f"{class_field}_agreement"]) for r in csv.DictReader(f)}


def _imatrix_pairs(models: dict) -> list[str]:
    """The types a fidelity report measured both without and with the importance matrix."""
    return [t for t in models if f"{t}{names.IMATRIX_SUFFIX}" in models]


def render_imatrix(root: Path) -> str:
    """Each ladder type beside the same type quantised with the task's importance matrix
    (quantize.types' `-imat` entries): size, fidelity's KL and top-1, and eval's class agreement,
    per task. First the pairs the build measured (reports/<task>/fidelity.json, eval/ladder.csv),
    then the other types from the newest run by hand (tools.imatrix_sweep:
    reports/<task>/by-hand/imatrix-<run>-fidelity.json and, when eval ran there too,
    imatrix-<run>-ladder.csv); each row names the file it came from."""
    params = config.load(root / config.PARAMS)
    rows = ["| task | type | size MB, without / with | KL mean, without / with imatrix | KL p99, without / with "
            "| top-1, without / with | class agreement, without / with | answer tokens | from |",
            "|---|---|---|---|---|---|---|---|---|"]
    for task in params.tasks:
        paths = names.TaskPaths.for_task(task)
        sources = [(paths.fidelity, paths.eval_dir / "ladder.csv")]
        by_hand = sorted((root / paths.reports / "by-hand").glob("imatrix-*-fidelity.json"))
        if by_hand:
            newest = by_hand[-1].relative_to(root)
            sources.append((newest, newest.with_name(newest.name.replace("-fidelity.json", "-ladder.csv"))))
        shown: set[str] = set()
        for source, ladder in sources:
            kl = _report(root, str(source))["models"]
            agree = _ladder_agreement(root / ladder, get_task(task).class_field) if (root / ladder).is_file() else {}
            for t in sorted(set(_imatrix_pairs(kl)) - shown, key=lambda t: -kl[t]["size_mb"]):
                imat = f"{t}{names.IMATRIX_SUFFIX}"
                a, b = kl[t], kl[imat]
                acc = f"{agree[t]:.3f} / {agree[imat]:.3f}" if t in agree and imat in agree else "-"
                rows.append(f"| {task} | {t} | {a['size_mb']} / {b['size_mb']} "
                            f"| {a['kl_mean']:.3g} / {b['kl_mean']:.3g} | {a['kl_p99']:.3g} / {b['kl_p99']:.3g} "
                            f"| {a['top1']:.4f} / {b['top1']:.4f} | {acc} | {a['tokens']} | `{source}` |")
                shown.add(t)
        if not shown:
            rows.append(f"| {task} | - | - | - | - | - | - | - | not built yet |")
    return "\n".join(rows)


def render_retrieval(root: Path) -> str:
    """eval's retrieval pass (metrics.json <report model>.retrieval, each task): the report
    model on the same rows with and without worked examples from the RAG export. A task whose
    eval skips the pass (eval.retrieval_k 0) shows the newest release in RELEASES whose build
    ran it, named in the build column."""
    rows = ["| task | build | model | rows | examples shown (mean; rows with none) | field | without | with | delta |",
            "|---|---|---|---|---|---|---|---|---|"]
    def measured(metrics: dict) -> bool:
        return any("retrieval" in m for m in metrics.values())

    for task in config.load(root / config.PARAMS).tasks:
        rel = str(names.TaskPaths.for_task(task).metrics)
        metrics, build = _report(root, rel), "HEAD"
        if not measured(metrics):
            for version in reversed(list(release_commits(root))):  # RELEASES lists them oldest first
                text, _ = read_at(version, rel, root)
                if text is not None and measured(at := json.loads(text)):
                    metrics, build = at, f"{version} (eval.retrieval_k 0 since)"
                    break
        for model, m in metrics.items():
            if "retrieval" not in m:
                continue
            r = m["retrieval"]
            for key in [k for k in r["delta"] if k.endswith("_agreement")]:
                rows.append(f"| {task} | {build} | {model} | {m['n']} | {r['examples_shown_mean']:.2f}; "
                            f"{r['rows_without_examples']} | {key.removesuffix('_agreement')} "
                            f"| {r['without_retrieval'][key]:.3f} "
                            f"| {r['with_retrieval'][key]:.3f} | {r['delta'][key]:+.3f} |")
    return "\n".join(rows)


def render_agreement(root: Path) -> str:
    """make review's blind double-labeled shares (reports/<task>/review/agreement-*.json, written
    by `python -m tuneforge.review agreement`): Cohen's kappa and raw agreement per label field."""
    rows = ["| task | batch | rows labeled twice | field | kappa | raw agreement |", "|---|---|---|---|---|---|"]
    for task in config.load(root / config.PARAMS).tasks:
        for path in sorted((root / names.TaskPaths.for_task(task).reports / "review").glob("agreement-*.json")):
            a = _report(root, str(path.relative_to(root)))
            for field, f in a["fields"].items():
                kappa = "undefined" if f["kappa"] is None else f"{f['kappa']:.3f}"
                rows.append(f"| {task} | {path.stem.removeprefix('agreement-')} | {a['rows']} | {field} | {kappa} "
                            f"| {f['agreement']:.3f} |")
    return "\n".join(rows)


def render_byhand(root: Path) -> str:
    """Whole-holdout runs by hand (reports/<task>/by-hand/<build>-<quant>-whole-holdout.json, the
    JSON `python -m tuneforge.evaluate` prints): each model beside the rule labeler on every row."""
    rows = ["| task | build | model | n | kind (95% CI) | severity | unknown recall | security recall "
            "| fix recall | unseen products: model / labeler (p) | untouched: model / labeler (p) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task in config.load(root / config.PARAMS).tasks:
        if get_task(task).class_field != "kind":  # its figures are not these columns'
            continue  # (commit-messages: its own table, byhand-commits)
        last_labeler = None
        for path in sorted((root / names.TaskPaths.for_task(task).reports / "by-hand").glob("*-whole-holdout.json")):
            report = _report(root, str(path.relative_to(root)))
            build = path.stem.removesuffix("-whole-holdout").rsplit("-", 1)[0]  # <build>-<quant>
            for model, m in report.items():
                if model == names.RULE_LABELER:
                    continue
                per_kind = m.get("per_kind", {})
                vs = m.get("vs_labeler", {})
                cells = [f"{vs[k]['model']:.3f} / {vs[k]['labeler']:.3f} ({vs[k]['p_labeler_better']:.2g})"
                         if k in vs else "-" for k in ("unseen_products", "untouched")]
                rows.append(f"| {task} | {build} | {model.rsplit('-', 1)[-1]} | {m['n']} | {m['kind_agreement']:.3f} "
                            f"({m['kind_agreement_ci95_low']:.2f}-{m['kind_agreement_ci95_high']:.2f}) "
                            f"| {m['severity_agreement']:.3f} | {per_kind.get('unknown', {}).get('recall', 0):.2f} "
                            f"| {per_kind.get('security', {}).get('recall', 0):.2f} "
                            f"| {per_kind.get('fix', {}).get('recall', 0):.2f} | {cells[0]} | {cells[1]} |")
            labeler = report.get(names.RULE_LABELER)
            if labeler and labeler != last_labeler:  # the same gold gives the labeler the same figures
                last_labeler = labeler
                rows.append(f"| {task} | {build} | rule labeler | {labeler['n']} | {labeler['kind_agreement']:.3f} "
                            f"({labeler['kind_agreement_ci95_low']:.2f}-{labeler['kind_agreement_ci95_high']:.2f}) "
                            f"| {labeler['severity_agreement']:.3f} | | | | | |")
    return "\n".join(rows)


def render_compare(root: Path) -> str:
    """Two builds' whole-holdout answers row by row (reports/<task>/by-hand/compare-*.json, written
    by `python -m tools.compare_answers`): the sign test over the rows only one gets right."""
    rows = ["| task | first | second | n | first's kind | second's | only the first right "
            "| only the second right | p (second better) |", "|---|---|---|---|---|---|---|---|---|"]
    for task in config.load(root / config.PARAMS).tasks:
        for path in sorted((root / names.TaskPaths.for_task(task).reports / "by-hand").glob("compare-*.json")):
            c = _report(root, str(path.relative_to(root)))
            first, second = (Path(c[k]).stem for k in ("first_file", "second_file"))
            rows.append(f"| {task} | {first} | {second} | {c['n']} | {c['first']:.3f} | {c['second']:.3f} "
                        f"| {c['first_only']} | {c['second_only']} | {c['p_second_better']:.2g} |")
    return "\n".join(rows)


def render_mutation(root: Path) -> str:
    """make mutate (reports/mutation.json): per module and in total."""
    rep = _report(root, "reports/mutation.json")
    rows = ["| module | mutants | killed | judged equivalent | not killed | score |", "|---|---|---|---|---|---|"]
    for mod, m in rep["modules"].items():
        if not m.get("mutants"):
            continue
        name = mod.removeprefix("src/tuneforge/")  # "sources/common.py": package modules share base names
        rows.append(f"| `{name}` | {m['mutants']:,} | {m['killed']:,} | {m['equivalent']} "
                    f"| {m['survived']} | {m['score']:.3f} |")
    t = rep["totals"]
    rows.append(f"| all | {t['mutants']:,} | {t['killed']:,} | {t['equivalent']} | {t['not_killed']} "
                f"| {rep['score']:.3f} (minimum {rep['minimum_score']}) |")
    return "\n".join(rows) + (f"\n\n{rep['tool']} {rep['tool_version']}, one worker, "
                              f"{rep['runtime_s'] / 60:.1f} min; score = {rep['score_definition']}.")

def render_versus(root: Path) -> str:
    """Each task's report model against its rule labeler on the same rows (metrics.json
    <report model>.vs_labeler): all rows, the untouched gold rows, the unseen products."""
    path = root / config.PARAMS
    params = config.load(path)
    rows = ["| task | model | rows | n | model's agreement | rule labeler's | only the model right "
            "| only the labeler right | p (labeler better) |", "|---|---|---|---|---|---|---|---|---|"]
    for task in params.tasks:
        ref = config.with_overrides(params, task, path).eval.report_model
        metrics = _report(root, str(names.TaskPaths.for_task(task).metrics))
        for subset, v in metrics[ref]["vs_labeler"].items():
            rows.append(f"| {task} | {ref} | {subset} | {v['n']} | {_num(v['model'])} | {_num(v['labeler'])} "
                        f"| {v['model_only']} | {v['labeler_only']} | {_num(v['p_labeler_better'])} |")
    return "\n".join(rows)


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


# the step budget against the release budget (Makefile RELEASE_PROFILE): the same recipe and
# data, one epoch over the whole export instead of 480 steps; read at each tag, so nothing is copied
BUDGET_RELEASES = (("v21", "default: 480 steps"), ("v22", "release: one epoch"),
                   ("v23", "default: 480 steps, repeat penalty 1.1"),
                   ("v24", "default: 480 steps, repeat penalty 1.02"),
                   ("v25", "default: 480 steps, repeat penalty 1.02, bf16 on AVX512-BF16"),
                   ("v26", "default: 480 steps, repeat penalty 1.02, bf16 on AVX512-BF16"),
                   ("v27", "default: 480 steps, repeat penalty 1.02, fp32 on AVX2"),
                   ("v28", "default: 480 steps, repeat penalty 1.02, fp32 on AVX2, kind and severity x5 in the loss"),
                   ("v29", "default: 480 steps, repeat penalty 1.02, bf16 on AVX512-BF16, kind and severity x5 "
                           "in the loss, the rule labeler's reading in the prompt"))


def render_releases(root: Path) -> str:
    """changelog-actions at the BUDGET_RELEASES tags (their committed metrics, verdict and train
    receipt, read with `git show`): what training read, and the promoted GGUF on every gold row
    (its confirmation) beside the rule labeler where the release gate reads."""
    rows = ["| release | train budget | examples read (hand-labeled) | steps | train receipt | promoted "
            "| kind on all gold rows (95% CI) | severity | unknown recall | unseen products: model / "
            "labeler (p) | untouched rows: model / labeler (p) |", "|---|" + "---|" * 10]
    for tag, budget in BUDGET_RELEASES:
        verdict = release_report(root, tag, (str(_PATHS.verdict),))
        train = release_report(root, tag, (str(_PATHS.receipt("train")),))
        metrics = release_report(root, tag, METRICS)
        promoted = verdict.get("promoted")
        extra = train["counts"]["extra"]
        resumed = f", resumed at step {extra['resumed_from_step']}" if extra.get("resumed_from_step") else ""
        # what training read, whether or not eval promoted anything
        trained = (f"| {tag} | {budget} | {train['counts']['records_out']:,} ({extra.get('source_human', 0):,}) "
                   f"| {extra['steps']:,} | {train['duration_s'] / 60:.0f} min{resumed} ")
        if promoted is None:
            rows.append(f"{trained}| none | | | | | |")
            continue
        h = metrics[promoted]["confirmation"]
        vs = h["vs_labeler"]
        cells = [f"{_num(vs[k]['model'])} / {_num(vs[k]['labeler'])} ({vs[k]['p_labeler_better']:.2g})"
                 for k in ("unseen_products", "untouched")]
        rows.append(f"{trained}| {promoted} "
                    f"| {_num(h['kind_agreement'])} "
                    f"({h['kind_agreement_ci95_low']:.2f}-{h['kind_agreement_ci95_high']:.2f}) "
                    f"| {_num(h['severity_agreement'])} | {_num(h['unknown_recall'])} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[Path], str]] = {
    "bench": render_bench,
    "faults": render_faults,
    "labeler": render_labeler,
    "stages": render_stages,
    "eval": render_eval,
    "leakage": render_leakage,
    "mutation": render_mutation,
    "commits": render_commits,
    "byhand-commits": render_commits_byhand,
    "confirmation": render_confirmation,
    "harvest": render_harvest,
    "buildtime": render_buildtime,
    "fidelity": render_fidelity,
    "imatrix": render_imatrix,
    "retrieval": render_retrieval,
    "agreement": render_agreement,
    "versus": render_versus,
    "byhand": render_byhand,
    "compare": render_compare,
    "releases": render_releases,
}


def render(name: str, root: Path = ROOT) -> str:
    if name not in SECTIONS:
        raise ValueError(f"unknown README section {name!r} (known: {', '.join(SECTIONS)})")
    return SECTIONS[name](root)


def update(names: list[str] | None = None, readme: Path = README, root: Path = ROOT,
           bodies: dict[str, str] | None = None) -> list[str]:
    """Rewrite the named sections (default: all) from their reports, or from `bodies`;
    returns the names whose text changed."""
    text = readme.read_text(encoding="utf-8")
    changed = []
    for name in names or list(SECTIONS):
        body = (bodies or {}).get(name)
        new = replace(text, name, body if body is not None else render(name, root), readme)
        if new != text:
            changed.append(name)
        text = new
    if changed:
        write_text(readme, text)
    return changed


def check(readme: Path = README, root: Path = ROOT) -> list[str]:
    """One line per section whose committed text differs from what its report renders."""
    text = readme.read_text(encoding="utf-8")
    out = []
    for name in SECTIONS:
        want, have = render(name, root), section(text, name, readme)
        if want != have:
            old, new = have.splitlines(), want.splitlines()
            diff = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
            line = text.count("\n", 0, text.index(markers(name)[0])) + 2 + diff
            out.append(f"{readme}:{line}: section {name} differs from its report; "
                       f"run `python -m tools.readme_sections {name}`")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.readme_sections", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"sections to rewrite (default: all of {', '.join(SECTIONS)})")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section differs")
    args = ap.parse_args(argv)
    try:
        if args.check:
            problems = check(README, ROOT)
            for p in problems:
                print(p, file=sys.stderr)
            return 1 if problems else 0
        changed = update(args.names or None, README, ROOT)
    except ValueError as e:
        print(f"readme_sections: {e}", file=sys.stderr)
        return 1
    print(f"README.md: rewrote {', '.join(changed) or 'nothing (already current)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
