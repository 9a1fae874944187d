"""What every bench section shares: the repo's paths, the machine, timing, a checked command."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench.json"
README = ROOT / "README.md"
DATA_STAGES = ("backfill", "evidence", "score", "export")  # what the data section runs and times


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def check_exit(cmd: list[str], returncode: int, stdout: str, stderr: str) -> str:
    """stdout of a finished command; a failure raises with the ends of both streams."""
    if returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return stdout


def run(cmd: list[str], cwd: Path | str = ROOT, env: dict | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    return check_exit(cmd, out.returncode, out.stdout, out.stderr)
