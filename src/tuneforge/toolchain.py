"""Installed package versions against params.yaml's `toolchain` pins: the run-time half of
requirements.lock (tests/test_lock.py holds params and the lock equal). Its own module, not
part of tuneforge.llm, so the data stages can check their pins without depending on the model
code (a change there would rerun them)."""
from __future__ import annotations

import importlib.metadata

# What the model sidecars record: the model-side pins. (bitsandbytes, the [gpu] extra, is
# absent on CPU, so it is no pin that every stage checks; train records it when it ran QLoRA.)
MODEL_PACKAGES = ["torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
                  "jinja2", "safetensors", "numpy", "gguf", "llama_cpp_python"]


class ToolchainMismatch(RuntimeError):
    """An installed package is not the version params.yaml pins (the user's fix: make setup)."""


def toolchain(packages: list[str] | None = None) -> dict[str, str]:
    out = {}
    for name in packages or MODEL_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not-installed"
    return out


def check_toolchain(expected: dict[str, str], names: list[str], every: bool = True) -> dict[str, str]:
    """Fail early when an installed package differs from its params.yaml pin
    (`toolchain.<name>`); a local build suffix (`2.13.0+cpu`) is ignored. With `every` (the
    model stages) every pin is checked, not only `names` (the ones the stage's outputs depend
    on): the environment is locked as a whole, and a stage run in any other one could differ
    in ways its own list does not show. The data stages check only `names`: they run without
    the model extras."""
    checked = list(dict.fromkeys([*names, *(expected if every else [])]))
    installed = toolchain(checked)
    wrong = {n: (str(expected.get(n)), installed[n]) for n in checked
             if installed[n].split("+")[0] != str(expected.get(n))}
    if wrong:
        detail = ", ".join(f"{n}: params {want}, installed {have}"
                           for n, (want, have) in wrong.items())
        raise ToolchainMismatch(f"toolchain mismatch ({detail}); install the locked environment "
                           "(make setup: requirements.lock) or update params.yaml and the lock")
    return installed
