"""Every GGUF the project decodes loads into llama.cpp's plain CPU buffers, never its
"extra" buffer types (AMX, CPU_REPACK).

Why: llama-cpp-python is built from its sdist with GGML_NATIVE, so on an Intel Xeon with
AMX (Sapphire Rapids and later) llama.cpp's AMX buffer type is compiled in; quantised
weights are repacked into it at load and the first decode segfaults in
ggml_backend_amx_mul_mat (llama.cpp issue #20824). llama_private turns use_extra_bufts off
(llama.cpp's --no-extra-bufts) for every model it opens.

Decoding runs in a subprocess: a segfault must fail one test, not kill the session. On a
machine without AMX the decode passes either way; the buffer check still bites wherever
llama.cpp has an extra buffer type for the weights (AMX here, CPU_REPACK elsewhere).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.model

import yaml  # noqa: E402

from tests.tiny_gguf import write_tiny_gguf  # noqa: E402
from tuneforge import gguf_tools, llama_private  # noqa: E402

from .conftest import ROOT  # noqa: E402

# Opens the file as eval/predict do, decodes the same prompt twice (free, then under the
# task's grammar), and prints the texts; llama.cpp's load log goes to stderr (verbose).
DECODE = r"""
import json, sys
from tuneforge.decode import chat_greedy
from tuneforge.grammar import json_grammar
from tuneforge.llama_private import open_gguf
from tuneforge.tasks import get_task
task = get_task("changelog-actions")
grammar = json_grammar(task.output_model.model_json_schema())
llm = open_gguf(sys.argv[1], n_ctx=1024, n_threads=1, verbose=True)
messages = task.messages("Fixed a crash in the parser when the input is empty.", None, "demo")
texts = [chat_greedy(llm, messages, g, 16, close=g is not None)["choices"][0]["message"]["content"]
         for g in (None, None, grammar, grammar)]
llm.close()
print(json.dumps(texts))
"""


@pytest.fixture(scope="module")
def quantised(tmp_path_factory) -> dict[str, Path]:
    """Tiny GGUFs in the types llama.cpp's extra buffers take (AMX takes both; the chain's
    Q8_0 and Q4_K_M models crashed the same way)."""
    root = tmp_path_factory.mktemp("tiny-quant")
    f32 = write_tiny_gguf(root / "tiny-f32.gguf", seed=1)
    return {q: gguf_tools.quantize(f32, root / f"tiny-{q}.gguf", q) for q in ("Q8_0", "Q4_0")}


def decode_in_subprocess(path: Path) -> tuple[list[str], str]:
    proc = subprocess.run([sys.executable, "-c", DECODE, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (f"decoding {path.name} exited {proc.returncode} (-11: segfault): "
                                  f"{proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_quantised_gguf_decodes_in_plain_cpu_buffers(quantised, qtype):
    texts, log = decode_in_subprocess(quantised[qtype])
    buffers = set(re.findall(r"load_tensors:\s+(\S+) model buffer size", log))
    assert buffers and buffers <= {"CPU", "CPU_Mapped"}, f"weights loaded into {sorted(buffers)}"
    assert "repack tensor" not in log  # what the AMX and CPU_REPACK buffers log per tensor
    free, free_again, constrained, constrained_again = texts
    assert free == free_again and constrained == constrained_again  # greedy: same file, same text
    json.loads(constrained)  # the grammar's answer parses (closed at the cap if need be)


def test_stock_llama_is_opened_the_same_way(quantised):
    """bench's stock-sampler baseline and the tests' comparisons load through llama_private too."""
    llm = llama_private.load_llama(quantised["Q8_0"], n_ctx=64, n_threads=1, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        assert not hasattr(llm, "close_after")  # llama-cpp-python's own sampler chain
    finally:
        llm.close()


class _ParamsWithoutTheField(ctypes.Structure):
    _fields_ = [("use_mmap", ctypes.c_bool)]


def test_a_llama_cpp_without_the_switch_is_refused():
    """A setattr on a ctypes Structure without the field would silently do nothing."""
    with pytest.raises(RuntimeError, match="use_extra_bufts"):
        llama_private.without_extra_bufts(_ParamsWithoutTheField())


def test_a_llama_cpp_that_builds_params_elsewhere_is_refused(quantised, monkeypatch):
    """The switch rides on Llama.__init__ assigning self.model_params before loading; a
    version that stops doing so must fail at load, not decode on AMX and crash."""
    import llama_cpp

    def init_without_params(self, model_path, **_):
        self._stack = contextlib.ExitStack()
    monkeypatch.setattr(llama_cpp.Llama, "__init__", init_without_params)
    with pytest.raises(RuntimeError, match="model_params"):
        llama_private.load_llama(quantised["Q8_0"], n_ctx=64)


# ---------------------------------------------------------------- the version written against

def test_a_llama_cpp_python_other_than_the_one_written_against_is_refused(tmp_path, monkeypatch):
    """The subclasses override private methods of one release: any other is refused at
    every way in, naming both versions, before llama.cpp is touched (the path need not exist)."""
    monkeypatch.setattr(llama_private, "toolchain", lambda names: {"llama_cpp_python": "0.3.37"})
    missing = tmp_path / "none.gguf"
    with pytest.raises(RuntimeError, match=r"llama-cpp-python 0\.3\.37 is installed.* of 0\.3\.36"):
        llama_private.open_gguf(missing, n_ctx=64, n_threads=1)
    with pytest.raises(RuntimeError, match=r"llama-cpp-python 0\.3\.37 is installed"):
        llama_private.load_llama(missing, n_ctx=64)
    monkeypatch.setattr(llama_private, "toolchain", lambda names: {"llama_cpp_python": "0.3.36+cpu"})
    llama_private.check_version()  # a local build suffix is the same release


def test_the_toolchain_pin_is_the_version_the_private_api_was_written_against():
    """Moving params.yaml's pin alone fails here: read llama_private against the new release."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert str(params["toolchain"]["llama_cpp_python"]) == llama_private.WRITTEN_AGAINST
