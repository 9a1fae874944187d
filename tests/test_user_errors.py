"""Every user command answers a bad input with one line naming the input and the fix, and a
non-zero exit; never a traceback (issue 17, item 9). One table: command, bad input, the
line expected, the exit status. Each row runs the command as a user would, in a subprocess
from the repository root."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PREDICT = [PY, "-m", "tuneforge.predict"]
EVALUATE = [PY, "-m", "tuneforge.evaluate", "--task", "changelog-actions"]
HARVEST = [PY, "-m", "tuneforge.harvest"]
PATCHES = [PY, "-m", "tuneforge.harvest_patches"]
HOOK = [PY, "-m", "tuneforge.hook"]
MAKE = ["make", "-s", "-o", "setup"]  # never (re)install .venv from a test

# (id, argv with {tmp} for the scratch dir, stdin, expected error line (regex), exit status)
CASES = [
    ("predict-stdin-not-utf8", PREDICT, b"Fixed a crash.\n\xff\xfe bad bytes\n",
     r"<stdin>:2:1: byte 0xff is not UTF-8; convert the input to UTF-8", 2),
    ("predict-file-not-utf8", [*PREDICT, "{tmp}/latin1.txt"], b"",
     r"{tmp}/latin1.txt:2:9: byte 0xe9 is not UTF-8; convert", 2),
    ("predict-jsonl-bad-row", [*PREDICT, "{tmp}/rows.jsonl"], b"",
     r"{tmp}/rows.jsonl:2: not an entry object \(ValueError: 'text' must be a non-empty string\); "
     r"each line must be", 2),
    ("predict-jsonl-not-json", [*PREDICT, "{tmp}/notjson.jsonl"], b"",
     r"{tmp}/notjson.jsonl:1: not an entry object \(JSONDecodeError", 2),
    ("predict-missing-file", [*PREDICT, "{tmp}/nope.txt"], b"",
     r"{tmp}/nope.txt: no such entry file; check the path", 2),
    ("predict-directory", [*PREDICT, "{tmp}"], b"", r"{tmp}: is a directory, not an entry file", 2),
    ("predict-missing-model", [*PREDICT, "--model", "{tmp}/none.gguf"], b"x\n",
     r"--model {tmp}/none.gguf: no such GGUF; name a built one", 2),
    ("predict-missing-params", [*PREDICT, "--params", "{tmp}/p.yaml"], b"x\n",
     r"--params {tmp}/p.yaml: no such file; run from the project root or pass --params FILE", 2),
    ("predict-unknown-option", [*PREDICT, "--bogus"], b"", r"unrecognized arguments: --bogus \(see --help\)", 2),
    ("predict-unknown-format", [*PREDICT, "--task", "changelog-actions", "--format", "xml"], b"x\n",
     r"--format xml: task changelog-actions has no such format; available: json \(see --help\)", 2),
    ("hook-not-a-repo", [*HOOK, "install", "--repo", "{tmp}/empty"], b"",
     r"--repo {tmp}/empty: not a git work tree \(git rev-parse --is-inside-work-tree: fatal: not a git "
     r"repository.*\); name a repository you commit in", 2),
    ("evaluate-gold-only", [*EVALUATE, "--gold", "{tmp}/gold.jsonl"], b"",
     r"the following arguments are required: --model", 2),
    ("evaluate-missing-model", [*EVALUATE, "--gold", "{tmp}/gold.jsonl", "--model", "{tmp}/none.gguf"], b"",
     r"--model {tmp}/none.gguf: no such GGUF", 2),
    ("evaluate-missing-gold", [*EVALUATE, "--gold", "{tmp}/none.jsonl", "--model", "{tmp}/fake.gguf"], b"",
     r"{tmp}/none.jsonl: no such gold file; check the path", 2),
    ("evaluate-gold-not-utf8", [*EVALUATE, "--gold", "{tmp}/latin1.txt", "--model", "{tmp}/fake.gguf"], b"",
     r"{tmp}/latin1.txt:2:9: byte 0xe9 is not UTF-8", 2),
    ("evaluate-gold-bad-json", [*EVALUATE, "--gold", "{tmp}/notjson.jsonl", "--model", "{tmp}/fake.gguf",
                            "--allow-unpinned"], b"", r"{tmp}/notjson.jsonl:1: invalid JSON", 2),
    ("evaluate-unpinned", [*EVALUATE, "--gold", "{tmp}/gold.jsonl", "--model", "{tmp}/fake.gguf"], b"",
     r"fake.gguf is not pinned .*pass --allow-unpinned to run it anyway", 2),
    ("evaluate-negative-limit", [*EVALUATE, "--gold", "{tmp}/gold.jsonl", "--model", "{tmp}/fake.gguf",
                                 "--limit", "-1"], b"",
     r"--limit -1: must be 0 \(every row\) or a positive row count", 2),
    ("harvest-missing-src", [*HARVEST, "--src", "{tmp}/none", "--out", "{tmp}/s.tar.gz"], b"",
     r"--src {tmp}/none is not a directory; name the directory of changelogs", 2),
    ("harvest-out-directory", [*HARVEST, "--src", "{tmp}", "--out", "{tmp}"], b"", r"--out {tmp}: is a directory", 2),
    ("harvest-out-not-targz", [*HARVEST, "--src", "{tmp}", "--out", "{tmp}/s.zip"], b"",
     r"--out {tmp}/s.zip: the snapshot is a .tar.gz", 2),
    ("harvest-max-bytes", [*HARVEST, "--src", "{tmp}", "--out", "{tmp}/s.tar.gz", "--max-bytes", "0"], b"",
     r"--max-bytes 0 must be positive", 2),
    ("harvest-nothing-found", [*HARVEST, "--src", "{tmp}/empty", "--out", "{tmp}/s.tar.gz"], b"",
     r"no release-note files under {tmp}/empty; point --src at a directory", 1),
    ("patches-repo-missing", [*PATCHES, "--repo", "{tmp}/none"], b"",
     r"--repo {tmp}/none: not a directory; name a local git repository", 2),
    ("patches-repo-not-git", [*PATCHES, "--repo", "{tmp}/empty"], b"",
     r"{tmp}/empty: git rev-parse failed: fatal: not a git repository.*; --repo must name a local git", 2),
    ("patches-repo-no-commits", [*PATCHES, "--repo", "{tmp}/fresh-repo"], b"",
     r"fresh-repo: git rev-list failed: .*; --repo needs a repository with commits on HEAD", 2),
    ("patches-out-not-targz", [*PATCHES, "--repo", "{tmp}", "--out", "{tmp}/s.zip"], b"",
     r"--out {tmp}/s.zip: the snapshot is a .tar.gz", 2),
    ("patches-max-bytes", [*PATCHES, "--max-bytes", "0"], b"", r"--max-bytes 0 must be positive", 2),
    ("patches-packages-with-repo", [*PATCHES, "--repo", "{tmp}", "--packages", "zlib"], b"",
     r"--packages is for Debian mode", 2),
    ("make-harvest-patches-repo", [*MAKE, "harvest-patches", "REPO={tmp}/none"], b"",
     r"make harvest-patches: REPO={tmp}/none is not a directory; pass a local git repository", 2),
    ("make-harvest-src", [*MAKE, "harvest", "SRC={tmp}/none"], b"",
     r"make harvest: SRC={tmp}/none is not a directory; pass the directory of changelogs", 2),
    ("make-bench-only", [*MAKE, "bench", "ONLY=decode,nope"], b"",
     r"make bench: ONLY=decode,nope: no section 'nope'; use a comma list of sha256,decode", 2),
    ("make-release-version", [*MAKE, "release", "VERSION=bad..name"], b"",
     r"make release: VERSION='bad..name' is not a valid tag name", 2),
    ("make-install-hook-repo", [*MAKE, "install-hook"], b"",
     r"make install-hook: no REPO; usage: make install-hook REPO=path/to/repo \[FORCE=1\]", 2),
    ("make-remote-s3-bucket", [*MAKE, "remote-s3", "BUCKET=bucket/path"], b"",
     r"make remote-s3: BUCKET='bucket/path' is not an s3:// URL; usage:", 2),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "latin1.txt").write_bytes(b"Fixed.\nRemoved \xe9t\xe9.\n")
    (tmp / "rows.jsonl").write_text('{"text": "Fixed a crash."}\n{"text": 1}\n')
    (tmp / "notjson.jsonl").write_text("Fixed a crash.\n")
    (tmp / "gold.jsonl").write_text('{"text": "x"}\n')
    (tmp / "fake.gguf").write_bytes(b"GGUF not really")
    (tmp / "empty").mkdir()
    subprocess.run(["git", "init", "-q", str(tmp / "fresh-repo")], check=True)
    return tmp


def run(argv: list[str], stdin: bytes, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "TQDM_DISABLE": "1", **(env or {})})


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_a_nonzero_exit(scratch, case):
    _, argv, stdin, expected, status = case
    argv = [a.replace("{tmp}", str(scratch)) for a in argv]
    proc = run(argv, stdin)
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    # the command's one line; make adds its own "make: *** [target] Error 2" after it
    errors = [line for line in err.splitlines() if ": error: " in line or re.match(r"make \w", line)]
    assert len(errors) == 1, err
    assert re.search(expected.replace("{tmp}", re.escape(str(scratch))), errors[0]), errors[0]
    assert proc.returncode == status, (proc.returncode, err)


def test_a_stage_started_by_another_python_says_so_in_one_line(tmp_path):
    """dvc runs `python -m stages.<name>` with the first python on PATH: a Python without
    tuneforge (not the project's .venv) gets one line that says to activate it."""
    other = shutil.which("python3", path="/usr/bin:/bin") or pytest.skip("no system python3")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run([other, "-s", "-c", "import tuneforge"], capture_output=True, cwd=tmp_path, env=env)
    if probe.returncode == 0:
        pytest.skip(f"{other} can import tuneforge")
    proc = subprocess.run([other, "-s", "-m", "stages.backfill"], capture_output=True, cwd=ROOT, env=env,
                          timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot import tuneforge" in err and "source .venv/bin/activate" in err and "make repro" in err
