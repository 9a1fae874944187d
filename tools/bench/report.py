"""bench.json's figures as the README table beside their targets; the command."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

from tools import bench
from tools.bench.common import DATA_STAGES, README, REPORT, ROOT, machine
from tools.bench.fidelity import bench_fidelity
from tools.bench.model import bench_decode, bench_sha256, bench_train
from tools.bench.pipeline import bench_build, bench_data
from tools.bench.serve import bench_serve
from tools.verify_repro import stage_rank
from tuneforge import config
from tuneforge.io import canonical_json, write_json

TARGETS = {
    "entries_per_s": "≥ 100k entries/s at 1M, ≥ 20× the baseline",
    "labeler_us_per_entry": "faster than `re` alone, every label the same (issue 23 item 2)",
    "noop_repro_s": "≤ 1.2× `dvc status`",
    "train_tokens_per_s": "≥ 2× the padded Trainer, ≥ 90% real tokens",
    "train_examples_per_s": "≥ 2× v13's (issue 21 item 4: twice the examples in the same budget)",
    "decode_tokens_per_s": "≥ 5× transformers `generate`",
    "incremental_ratio": "≤ 10% of the full build",
    "fidelity_share_of_eval": "≤ 10% of eval",
    "sha256_mb_per_s": "≥ 0.8× `sha256sum`",
    "eval_batch_s": "faster than one decoder on every core, every answer the same",
    "eval_confirm_s": "faster than a pool opened for every few rows, every answer the same",
    "full_build_s": "≤ 15 min a task (the shared base stage in each), ≤ 30 min in all, on 2 cores",
    "peak_rss_mb": "reported",
    "served_requests_per_s": "reported, beside predict in-process",
    "retrieval_ms_per_query": "reported, at the full RAG export",
}


# The table's last column: whether a row's figures meet its TARGETS entry, decided here from the
# same numbers the row prints, so no prose has to say it (prose goes stale: the README once called
# decoding met at 6.2x, written by hand from an old run, after the bench had measured 2.45x)
MET, NOT_MET, REPORTED = "met", "**not met**", "-"


def verdict(ok: bool | None) -> str:
    """None: a row its target does not judge (a figure only reported, a size the target is not at)."""
    return REPORTED if ok is None else MET if ok else NOT_MET


def build_budget_met(stage_s: dict[str, float]) -> bool:
    """full_build_s's target: each task's stages (`<stage>@<task>`) with the shared ones (base),
    at most 15 min, and all of them at most 30."""
    shared = sum(v for k, v in stage_s.items() if "@" not in k)
    tasks: dict[str, float] = {}
    for k, v in stage_s.items():
        if "@" in k:
            tasks[k.split("@", 1)[1]] = tasks.get(k.split("@", 1)[1], 0.0) + v
    return sum(stage_s.values()) <= 30 * 60 and all(shared + t <= 15 * 60 for t in tasks.values())


def table(report: dict) -> str:
    s = report.get("sections", {})
    rows = []

    def add(key: str, value: str, baseline: str, ratio: str, ok: bool | None = None) -> None:
        rows.append(f"| `{key}` | {value} | {baseline} | {ratio} | {TARGETS[key]} | {verdict(ok)} |")

    if d := s.get("data"):
        for n, r in sorted(d["sizes"].items(), key=lambda item: int(item[0])):
            floor = r.get("floor")
            add("entries_per_s", f"{r['entries_per_s']:,} at {int(n):,} entries ({r['s']} s)" + (
                f"; floor with this labeler: four stage start-ups {sum(floor['stage_startup_s'].values()):.2f} s"
                f" + labeling {floor['label_s']} s / {floor['cores']} cores = {floor['floor_s']} s, "
                f"at most {floor['max_ratio']}×" if floor else ""),
                f"{r['baseline_json']['entries_per_s']:,} ({r['baseline_json']['s']} s)", f"{r['ratio']}×",
                # the target is at 1M entries; the other sizes show how the figure grows
                r["entries_per_s"] >= 100_000 and r["ratio"] >= 20 if int(n) == 1_000_000 else None)
        if lab := d.get("labeler"):
            add("labeler_us_per_entry", f"{lab['us_per_entry']} us an entry over the {lab['entries']:,} real "
                f"snapshot entries, RE2 stand-ins first (same labels: {'yes' if lab['same_labels'] else 'NO'})",
                f"`re` alone: {lab['baseline_re_us_per_entry']} us", f"{lab['ratio']}×",
                lab["ratio"] > 1 and lab["same_labels"])
        if big := d.get("scale"):
            add("entries_per_s", f"{big['entries_per_s']:,} at {big['entries']:,} entries ({big['s']} s, a "
                f"{big['snapshot_mb']:,.0f} MB snapshot; stages only)", "not run at this size", "-")
        for n, r in [(k, v) for k, v in sorted(d["sizes"].items(), key=lambda item: int(item[0]))
                     if k == str(d.get("at_entries")) and "peak_rss_mb" in v] + (
                [(str(d["scale"]["entries"]), d["scale"])] if d.get("scale") else []):
            tree = r.get("tree_pss_mb", {})
            add("peak_rss_mb", f"data stages at {int(n):,} entries: " + ", ".join(  # pipeline order
                f"{k} {r['peak_rss_mb'][k]:,.0f} MB" + (f" (with its workers: {tree[k]:,.0f} MB)"
                                                        if k in tree else "")
                for k in DATA_STAGES if k in r["peak_rss_mb"]), "-", "-")
    if b := s.get("build"):
        floor = b.get("dvc_floor")
        add("noop_repro_s", f"{b['noop_repro_s']} s" + (
            f" (DVC alone, a {floor['stages']}-stage `cp` chain: {floor['noop_repro_s']} s against "
            f"{floor['dvc_status_s']} s, {floor['noop_ratio']}×)" if floor else ""),
            f"`dvc status` {b['baseline_dvc_status_s']} s", f"{b['noop_ratio']}×", b["noop_ratio"] <= 1.2)
    if t := s.get("train"):
        bf16 = t.get("plain_padded_bf16")
        peak = t.get("gemm_peak")
        add("train_tokens_per_s", f"{t['train_tokens_per_s']} tok/s, {t['real_token_share']:.0%} real "
            f"({t.get('precision', 'fp32')}{', compiled' if t['ours'].get('compiled') else ''})"
            + (f"; {t['peak_share']:.0%} of this machine's matmul peak at the model's shapes (bf16 "
               f"{peak['bf16']}, fp32 {peak['fp32']} GFLOP/s; {t['flops_per_token'] / 1e6:.0f} MFLOP a token)"
               if peak else ""),
            f"padded to longest: {t['baseline_padded']['tokens_per_s']} tok/s, "
            f"{t['baseline_padded']['real_share']:.0%} real; padded to {t.get('max_tokens', 512)}: "
            f"{t['baseline_max_length']['tokens_per_s']} tok/s"
            + (f"; plain Trainer with bf16 autocast: {bf16['tokens_per_s']} tok/s" if bf16 else ""),
            f"{t['ratio']}× ({t['ratio_max_length']}× vs fixed length)",
            t["ratio"] >= 2 and t["real_token_share"] >= 0.9)
    if t and (v13 := t.get("v13_settings")):
        ours = t["ours"]
        add("train_examples_per_s", f"{ours['examples_per_s']} examples/s ({ours['attention']} attention, "
            + (f"top {ours['lora_layers']} blocks adapted" if ours["lora_layers"] else "every block adapted")
            + "); a step's time: " + ", ".join(f"{g} {v:.0%}" for g, v in t["step_shares"].items()),
            f"v13's step ({v13['attention']}, every block"
            + (", LM head over the batch's union of completion positions" if v13.get("loss") else "")
            + f"): {v13['examples_per_s']} examples/s",
            f"{t['examples_ratio']}×", t["examples_ratio"] >= 2)
    if d := s.get("decode"):
        stock = d.get("q8_0_grammar_stock", {}).get("tokens_per_s", "?")
        add("decode_tokens_per_s", f"{d['decode_tokens_per_s']} tok/s (Q8_0, grammar checked on the "
            f"argmax first; stock sampler chain {stock}, free {d['q8_0_free']['tokens_per_s']}; "
            f"same texts: {'yes' if d.get('grammar_first_same_texts') else 'NO'})",
            f"{d['baseline_transformers']['tokens_per_s']} tok/s", f"{d['ratio']}×", d["ratio"] >= 5)
        if e := d.get("eval_batch"):
            add("eval_batch_s", f"{e['per_core_s']} s for {e['rows']} gold rows on {e['decoders']} single-threaded "
                f"decoders (Q8_0, eval's batches; same answers: {'yes' if e['same_answers'] else 'NO'})",
                f"one decoder on every core: {e['one_decoder_s']} s", f"{e['ratio']}×",
                e["ratio"] > 1 and e["same_answers"])
            if c := e.get("confirmation"):
                add("eval_confirm_s", f"{c['kept_pool_s']} s for the same rows {e['decoders']} at a time on one "
                    f"pool of decoders kept open (eval's confirmation; same answers: "
                    f"{'yes' if c['same_answers'] else 'NO'})",
                    f"a pool opened for every {e['decoders']} rows: {c['pool_per_rows_s']} s", f"{c['ratio']}×",
                    c["ratio"] > 1 and c["same_answers"])
    if b:
        add("incremental_ratio", f"{b['incremental']['s']} s ({b['incremental']['param']})",
            f"full build {b['full_build_total_s']} s", f"{b['incremental_ratio']:.1%}",
            b["incremental_ratio"] <= 0.10)
    if f := s.get("fidelity"):
        for task, r in f["tasks"].items():
            fid = r["fidelity"]
            if "kl_s" in fid:  # a run from before eval held the checks: the fidelity stage beside a cold eval
                add("fidelity_share_of_eval", f"{task}: fidelity stage {fid['wall_s']} s (tokenizer round trip "
                    f"{fid['round_trip_s']} s, teacher-forced KL {fid['kl_s']} s)",
                    f"cold eval {r['eval']['wall_s']} s ({r['decoded']} answers decoded)", f"{r['share']:.1%}",
                    r["share"] <= 0.10)
                continue
            add("fidelity_share_of_eval", f"{task}: fidelity checks {fid['s']:.1f} s inside a cold eval of "
                f"{r['eval']['stage_s']:.1f} s (tokenizer round trip {fid['round_trip_s']} s; {fid['forced_rows']} "
                f"forced passes)", f"the rest of that eval: {r['eval']['stage_s'] - fid['s']:.1f} s "
                f"({r['decoded']} answers decoded)", f"{r['share']:.1%}", r["share"] <= 0.10)
    elif b and b.get("fidelity_share_of_eval") and not b.get("forced"):
        add("fidelity_share_of_eval", "not measured: that clean build skipped fidelity (its outputs are "
            "committed and its deps came out bit-identical, so DVC saw nothing to do; stages are forced since)",
            "-", "-")
    elif b and b.get("fidelity_share_of_eval"):
        for task, share in b["fidelity_share_of_eval"].items():
            if isinstance(share, dict):  # the checks inside eval (its receipt's fidelity_ms)
                add("fidelity_share_of_eval", f"{task}: fidelity checks {share['fidelity_s']} s inside eval",
                    f"the rest of eval: {share['eval_s'] - share['fidelity_s']:.1f} s", f"{share['share']:.1%}",
                    share["share"] <= 0.10)
            else:  # a build from before eval held the checks: the fidelity stage's time
                add("fidelity_share_of_eval", f"{task}: fidelity {b['full_build_s'][f'fidelity@{task}']} s",
                    f"eval {b['full_build_s'][f'eval@{task}']} s", f"{share:.1%}", share <= 0.10)
    if v := s.get("serve"):
        served = {c: v[f"served_{c}_clients"] for c in (1, 4) if f"served_{c}_clients" in v}
        ours = "; ".join(f"{c} client{'s' if c > 1 else ''}: {r['requests_per_s']}/s, p50 {r['p50_ms']:.0f} ms, "
                         f"p95 {r['p95_ms']:.0f} ms" for c, r in served.items())
        base = v["in_process"]
        pinned = "" if v.get("promoted", True) else ", not promoted: the build's report model, pinned"
        add("served_requests_per_s", f"{v['task']} ({v['model']}{pinned}, {v['requests']} requests): {ours}",
            f"predict in-process: {base['requests_per_s']}/s, p50 {base['p50_ms']:.0f} ms, p95 {base['p95_ms']:.0f} ms",
            f"{v['served_vs_in_process']}×")
        r = v["retrieval"]
        add("retrieval_ms_per_query", f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms (k={r['k']}, {r['queries']} "
            f"queries over {r['rag_rows']:,} rows; index built in {r['index_build_s']} s, once per export)",
            "-", "-")
    if h := s.get("sha256"):
        add("sha256_mb_per_s", f"{h['sha256_mb_per_s']} MB/s", f"{h['baseline_sha256sum_mb_per_s']} MB/s",
            f"{h['ratio']}×", h["ratio"] >= 0.8)
    if b:
        # bench.json is written with sorted keys: list the stages in dvc.yaml's order
        rank = stage_rank(ROOT)

        def per_stage(values: dict) -> str:
            return ", ".join(f"{k} {values[k]}" for k in sorted(values, key=rank))

        add("full_build_s", f"{b['full_build_total_s'] / 60:.1f} min ({per_stage(b['full_build_s'])})"
            + ("" if b.get("forced") else "; fidelity skipped, see above"), "-", "-",
            build_budget_met(b["full_build_s"]))
        add("peak_rss_mb", per_stage(b["peak_rss_mb"]), "-", "-")
    head = measured_on(report)
    return "\n".join([head, "", "| figure | ours | baseline (same run) | ratio | target | met |",
                      "|---|---|---|---|---|---|", *rows])


def measured_on(report: dict) -> str:
    """Which machine ran which section: `make bench ONLY=...` reruns some sections on whatever
    machine it is, so one machine line for the whole table would claim the others' figures
    for it. A section records its own `machine`; one run before it did says so."""
    def words(m: dict | None) -> str:
        if not m:
            return "a machine not recorded (this section ran before sections recorded theirs)"
        return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB"

    groups: dict[str, list[str]] = {}
    for name in sorted(report.get("sections", {})):
        ran = report.get("ran", {}).get(name, "?")
        groups.setdefault(words(report["sections"][name].get("machine")), []).append(f"{name} {ran}")
    return "Measured by `make bench`, each section beside its baseline in the same run: " + "; ".join(
        f"{', '.join(names)} on {where}" for where, names in groups.items()) + "."


def update_readme(text: str) -> None:
    """The table between the bench markers (tools.readme_sections, shared with make faults)."""
    from tools import readme_sections

    try:
        readme_sections.update(["bench"], README, ROOT, bodies={"bench": text})
    except ValueError as e:
        raise SystemExit(str(e)) from e


SECTIONS = ("sha256", "decode", "serve", "train", "data", "fidelity", "build")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=bench.__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="data section entry counts")
    ap.add_argument("--scale", type=int, default=10_000_000,
                    help="data section: one more run of the stages alone at this many entries (0: none)")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--task", help="the task whose data and models the sections use (default: the only "
                                   "one params.yaml lists); build builds every task")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    try:
        params, task = config.for_command(ROOT / config.PARAMS, args.task)
    except config.ParamsError as e:
        ap.error(str(e))
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report.setdefault("sections", {})
    report.setdefault("ran", {})
    report["machine"] = machine()  # the last run's; the table names each section's own
    for name in args.only.split(","):
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}")
        print(f"bench: {name} ...", flush=True)
        t0 = time.perf_counter()
        if name == "data":
            result = bench_data(params, task, [int(x) for x in args.sizes.split(",")], args.scale)
        elif name == "train":
            result = bench_train(params, task, args.train_steps)
        elif name == "build":
            result = bench_build(params)
        elif name == "fidelity":
            result = bench_fidelity(params)
        else:
            result = {"sha256": bench_sha256, "decode": bench_decode, "serve": bench_serve}[name](params, task)
        if name not in ("build", "fidelity"):  # these two measure every task
            result["task"] = task
        result["bench_s"] = round(time.perf_counter() - t0, 1)
        result["machine"] = machine()  # sections rerun alone, maybe elsewhere: each names its own
        report["sections"][name] = result
        report["ran"][name] = datetime.date.today().isoformat()
        print(canonical_json({name: result}), flush=True)
        write_json(REPORT, report)
    text = table(report)
    update_readme(text)
    print(text)
    return 0
