"""tools/gpu_bundle: the pins it reads from the locks, and the llama.cpp sources it cuts out of
the sdist (a long member name lives in a PAX header, which once kept the sdist's prefix and
left the CUDA build without its template instances)."""
from __future__ import annotations

import io
import tarfile

from tools import gpu_bundle

VENDORED = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
LONG = "ggml/src/ggml-cuda/template-instances/fattn-mma-f16-instance-ncols1_16-ncols2_2-with-a-long-name.cu"


def test_pins_read_every_exact_pin_with_normalised_names(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# via x\nPyYAML==6.0.3 \\\n    --hash=sha256:ab\n"
                    "google_re2==1.1.20251105 ; python_version >= '3.11'\njsonschema-rs==0.60.3\n")
    assert gpu_bundle.pins(lock) == {"pyyaml": "6.0.3", "google-re2": "1.1.20251105", "jsonschema-rs": "0.60.3"}


def test_llama_sources_keep_the_build_inputs_without_the_sdist_prefix(tmp_path, monkeypatch):
    sdists = tmp_path / "sdists"
    sdists.mkdir()
    files = {LONG: b"// instance\n", "ggml/src/ggml.c": b"int x;\n", "CMakeLists.txt": b"project(x)\n",
             "models/ggml-vocab-llama.gguf": b"big", "docs/build.md": b"docs", "ggml/src/ggml-vulkan/v.cpp": b"v"}
    with tarfile.open(sdists / "llama_cpp_python-0.3.36.tar.gz", "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(VENDORED + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(gpu_bundle, "CACHE", tmp_path)
    out = tmp_path / "llama-src.tar.xz"
    gpu_bundle.llama_sources(out, "0.3.36")
    with tarfile.open(out) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert got == {k: files[k] for k in (LONG, "ggml/src/ggml.c", "CMakeLists.txt")}
