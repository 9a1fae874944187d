"""The v6 revision of the changelog hand labels (issue 21 item 1), run once from the repository
root on 2026-11-30 (kept as the record of what changed; refs are "gold:<line>" / "labeled:<line>"
of the files before it ran). Applies: version-free action texts (STYLE's
style_version_not_in_input), 6 manual STYLE fixes, the memory-safety relabels both annotators
agreed on (v6-memory-relabels.json), and contract "v6" on every row."""
import json
from pathlib import Path

HERE = Path(__file__).parent
rewrites = json.load((HERE / "v6-version-rewrites.json").open())
manual = {
    "gold:22": "Use the `--limit-rate' option, as in `wget --limit-rate=15k URL', to cap the download rate.",
    "gold:50": "Upgrade pip to speed up installs from Git URLs with a revision via partial clone.",
    "gold:144": "Replace uses of the `L' command in sed scripts before sed 4.2 removes it.",
    "gold:204": "Use the x86 gas -q option to quieten warnings about register size changes, indirect jmp/call without `*' and deprecated floating point instructions.",
    "gold:254": "Upgrade setuptools to stop pkg_resources namespace declaration from calling the deprecated loader.load_module().",
    "labeled:40": "Use `wget -p URL-THAT-USES-FRAMES' on pages with frames to download the frame HTML files and their requisites.",
}
relabels = json.load((HERE / "v6-memory-relabels.json").open())  # ref -> {kind, severity, rule, note}
changed = {"action_text": 0, "kind": 0}
for path, src in [("data/gold/holdout.jsonl", "gold"), ("data/labeled/train.jsonl", "labeled")]:
    out = []
    for i, line in enumerate(open(path), 1):
        r = json.loads(line)
        ref = f"{src}:{i}"
        a = manual.get(ref) or rewrites.get(ref)
        if a and a != r["label"]["action_text"]:
            r["label"]["action_text"] = a
            changed["action_text"] += 1
        if ref in relabels:
            new = relabels[ref]
            r["label"]["kind"], r["label"]["severity"] = new["kind"], new["severity"]
            if "rule" in r or src == "gold":
                r["rule"] = new["rule"]
            r["note"] = new["note"]
            changed["kind"] += 1
        r["contract"] = "v6"
        out.append(json.dumps(r, ensure_ascii=False))
    open(path, "w").write("\n".join(out) + "\n")
print(changed)
