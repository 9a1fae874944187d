"""Every record that crosses a stage boundary, as a strict pydantic model.

The writer builds the model and dumps it; the reader parses it with `read_model`, so a file
with a missing, extra or mistyped field fails naming the file and the field instead of
surfacing later as a KeyError or a '?' in the model card. schemas/ holds each one's JSON
schema (tuneforge.schema_gen).

    base/tuneforge.json       BaseSidecar      base stage (tuneforge.llm.materialize_base)
    adapter/tuneforge.json    AdapterSidecar   train
    merged/tuneforge.json     MergedSidecar    merge
    GGUF general.description  GgufProvenance   convert (quantize copies it into each type)
    eval/verdict.json         Verdict          eval -> register, predict
    eval/predictions.jsonl    Prediction       eval -> register (model card examples)
    registry.json             Registry         register -> predict
    data/replay/<task>.jsonl  ReplayRecord     tuneforge.replay -> evidence (accepted answers: label source replay)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

from tuneforge.names import SIDECAR

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PredictionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Toolchain = Annotated[dict[str, str], Field(description="installed package -> version")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Shape = TypeVar("Shape", bound=BaseModel)


def read_model(path: str | Path, model: type[Shape], fix: str) -> Shape:
    """Parse the JSON file at `path` as `model`; a bad file fails naming it, the field and `fix`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {fix}")
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise ValueError(f"{path}: not a {model.__name__} ({where(e)}): {fix}") from None


def where(e: ValidationError) -> str:
    """The first error as 'field.path: message'."""
    first = e.errors()[0]
    return f"{'.'.join(str(x) for x in first['loc']) or 'top level'}: {first['msg']}"


# ---------------------------------------------------------------- files and their hashes

class FileHash(_Strict):
    path: str = Field(description="as the stage read it, relative to the pipeline root")
    sha256: Sha256


class DirHash(_Strict):
    path: str
    sha256: Sha256 = Field(description="sha256 of the canonical JSON of `files`")
    files: dict[str, Sha256] = Field(description="relative file path -> its sha256, every file in the directory")


# ---------------------------------------------------------------- model sidecars

class _BaseSidecar(_Strict):
    kind: Literal["base"] = "base"
    name: str = Field(description="train.base.name: the base's name in the GGUF and the card")
    toolchain: Toolchain


class PypiGgufBase(_BaseSidecar):
    """A GGUF shipped inside a wheel on PyPI."""
    source: Literal["pypi-gguf"]
    requirement: str
    wheel: str
    wheel_sha256: Sha256
    member: str = Field(description="the GGUF's path inside the wheel")
    gguf_sha256: Sha256
    license: str | None = Field(description="general.license of the GGUF, null when it states none")


class GgufFileBase(_BaseSidecar):
    source: Literal["gguf-file"]
    path: str
    gguf_sha256: Sha256
    license: str | None


class HfDirBase(_BaseSidecar):
    source: Literal["hf-dir"]
    path: str
    weights_sha256: dict[str, Sha256]
    license: str | None = Field(description="license: in the directory's README front matter")


class TinyBase(_BaseSidecar):
    """The random-weight test model (tuneforge.llm.build_tiny_model)."""
    source: Literal["tiny"]
    seed: int
    license: None = None


class BaseSidecar(RootModel[Annotated[PypiGgufBase | GgufFileBase | HfDirBase | TinyBase,
                                      Field(discriminator="source")]]):
    """<base_model>/tuneforge.json: where the base weights came from (one shape per train.base.source)."""


class BaseRef(_Strict):
    dir: str
    sha256: Sha256 = Field(description="of its model.safetensors")


class Dataset(_Strict):
    train: FileHash
    valid: FileHash


class ExamplesRead(_Strict):
    train: int = Field(description="examples trained on")
    too_long: int = Field(description="read but over train.max_tokens, dropped")
    valid: int
    kinds_read: dict[str, int] = Field(description="kind -> rows read under the step budget")
    sources_read: dict[str, int] = Field(description="label source (human, rules, teacher) -> rows read "
                                                     "under the step budget (train.prefer_human_labels)")


class AdapterSidecar(_Strict):
    """<adapter>/tuneforge.json: how train made the adapter."""
    kind: Literal["adapter"] = "adapter"
    params: dict[str, Any] = Field(description="the train section of params.yaml it ran with")
    adapter_sha256: Sha256
    base: BaseRef
    dataset: Dataset
    examples: ExamplesRead
    toolchain: Toolchain
    steps: int
    train_loss: float
    valid_loss: float | None
    device: Literal["cpu", "cuda"]
    precision: Literal["bf16", "fp32"] = Field(description="what train.precision resolved to")
    qlora: bool


class MergedSidecar(_Strict):
    """<merged>/tuneforge.json: the merged model and the adapter it folded in."""
    kind: Literal["merged"] = "merged"
    base: str = Field(description="the base sidecar's name")
    base_sha256: Sha256
    adapter_sha256: Sha256
    dataset: Dataset
    train_params: dict[str, Any]
    dtype: Literal["float32", "bfloat16", "float16"]
    probe_max_logit_diff: float
    toolchain: Toolchain


class GgufProvenance(_Strict):
    """{"tuneforge": ...} in a GGUF's general.description, written by convert."""
    kind: Literal["finetuned", "base"]
    task: str
    base_model: str
    params_sha256: Sha256 = Field(description="of the params sections that shaped the weights")
    toolchain: Toolchain
    dataset_sha256: Sha256 | None = Field(None, description="finetuned only: the SFT train file")
    dataset_name: str | None = None
    adapter_sha256: Sha256 | None = None

    def dump(self) -> dict[str, Any]:
        """The dict convert writes: the finetuned-only keys are absent from a base GGUF's."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------- fidelity

class FidelityFigures(_Strict):
    """One GGUF against the merged HF model, teacher-forced on the gold answers (tuneforge.fidelity)."""

    kl_mean: float = Field(description="KL(HF || GGUF), nats per answer token, mean")
    kl_p99: float
    kl_max: float
    kl_max_row: str = Field(description="prediction id of the row holding the largest token KL")
    top1: float = Field(description="share of answer positions where both models' argmax agree")
    tokens: int = Field(description="answer tokens compared")
    rows: int
    max_kl_mean: float = Field(description="params fidelity.max_kl_mean for this type")
    max_kl_p99: float
    passed: bool = Field(description="within both bounds")
    size_mb: float
    sha256: Sha256 = Field(description="the GGUF measured: eval gates on these figures only for these bytes")


class TokenizerRoundTrip(_Strict):
    gold_texts: int = Field(description="gold prompts and conversations, chat-template rendered")
    train_texts: int
    ggufs: int
    mismatches: Literal[0] = Field(0, description="a mismatch fails the stage, so a written report has none")


class FidelityReport(_Strict):
    """reports/<task>/fidelity.json (DVC metrics): is every GGUF the merged model?"""

    schema_version: Literal[1] = 1
    models: dict[str, FidelityFigures] = Field(description="convert.outtype and every quantize.types GGUF")
    tokenizer: TokenizerRoundTrip


# ---------------------------------------------------------------- eval

class ModelVerdict(_Strict):
    verdict: Literal["pass", "fail"]
    confirmed: bool | None = Field(description="gated again on confirm_rows: true, it passed there; false, it "
                                               "failed there (verdict fail); null, never tried there (it failed on "
                                               "eval's sample, or a smaller one was promoted first): a pass on "
                                               "the sample alone")
    failed: list[str] = Field(description="the gates it failed, empty on pass")
    size_mb: float
    gguf: str = Field(description="the GGUF file eval judged")
    sha256: Sha256 = Field(description="its bytes: register and predict accept no other")


class Verdict(_Strict):
    """reports/eval/verdict.json: the release gates' verdict and what it was made on."""

    schema_version: Literal[4] = 4
    parity_model: str
    parity: float | None
    gates: dict[str, int | float | None]  # None: a gate switched off
    models: dict[str, ModelVerdict] = Field(description="every quantize.types GGUF, gated")
    promoted: str | None = Field(description="the smallest GGUF that passes on the sample and again on "
                                             "confirm_rows; null when none does")
    confirm_rows: int = Field(description="the gold rows a promotion candidate is gated on again "
                                          "(eval.confirm_rows), the sample's rows included")
    release: Literal["pass", "fail"]
    ggufs: dict[str, FileHash] = Field(description="every GGUF eval decoded, gated or not (base, converter output)")
    hf_models: dict[str, DirHash] = Field(description="the transformers models eval decoded")
    gold: FileHash
    params: dict[str, Any] = Field(description="the params eval ran with (verdict_params)")
    toolchain: dict[str, str] = Field(description="installed versions of the decoders")


class Prediction(_Strict):
    """One line of predictions.jsonl: one model's answer to one holdout row."""
    model: str = Field(description="the metrics key: a quantize type, the f16 GGUF, base, merged_hf")
    variant: Literal["hint", "no_hint", "retrieval", "confirmation"] = Field(
        description="no_hint: the section-hint ablation; retrieval: worked examples first (eval.retrieval_k); "
                    "confirmation: a promotion candidate on eval.confirm_rows")
    id: PredictionId = Field(description="tuneforge.names.prediction_id of the row's text")
    gold_kind: str
    pred_kind: str = Field(description="tuneforge.metrics.UNPARSED when the answer did not parse")
    parsed: bool
    closed_by_decoder: bool = Field(description="still open at eval.max_tokens; the decoder closed it")
    output: str


# ---------------------------------------------------------------- register

class RegistryMetrics(_Strict):
    """The figures from metrics.json a registry entry repeats (null where eval has none)."""
    class_field: str = Field(description="the task's class (tuneforge.tasks.Task.class_field): kind, type")
    class_agreement: float | None
    second_field: str = Field(description="the task's second graded field: severity, breaking")
    second_agreement: float | None
    parse_rate: float | None
    closed_by_decoder: int | None
    macro_f1: float | None
    parity: float | None

    @classmethod
    def of(cls, m: dict, fields: tuple[str, str]) -> RegistryMetrics:
        """One model's metrics.json entry, its figures named by the task's `fields`."""
        c, s = fields
        return cls(class_field=c, class_agreement=m.get(f"{c}_agreement"), second_field=s,
                   second_agreement=m.get(f"{s}_agreement"),
                   **{k: m.get(k) for k in ("parse_rate", "closed_by_decoder", "macro_f1", "parity")})


class RegistryEntry(_Strict):
    name: str = Field(description="the Ollama name, [namespace/]model:tag")
    model: str
    tag: str
    quantization: str
    gguf: str
    sha256: Sha256
    size_bytes: int
    modelfile: str
    stop: list[str]
    verdict: Literal["pass", "fail"]
    failed_gates: list[str]
    status: Literal["promoted", "candidate", "rejected"]
    license: str | None = Field(description="the GGUF's general.license")
    ollama_created: bool
    metrics: RegistryMetrics


class Registry(_Strict):
    """<models>/registry.json: what register made of each GGUF, and the verdict it acted on."""
    schema_version: Literal[2] = 2
    backend: Literal["ollama", "registry-file"]
    release: Literal["pass", "fail"]
    promoted: str | None
    verdict: FileHash = Field(description="the verdict.json register read: predict trusts an entry "
                                          "only while it is unchanged")
    models: list[RegistryEntry]


def read_sidecar(model_dir: str | Path, model: type[Shape]) -> Shape:
    """A model directory's tuneforge.json, parsed as the stage that wrote it writes it."""
    return read_model(Path(model_dir) / SIDECAR, model, f"{model_dir} was not written by this "
                      "version's stages: rebuild it (dvc repro)")


ReplayVerdict = Literal["accepted", "rejected", "escalated_accepted", "escalated_rejected"]


class Retrieved(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="the RAG export row's id")
    score: float = Field(description="BM25 score against the input")


class ReplayRecord(BaseModel):
    """One replay run of one input: the replay log's line (append-only JSONL)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1
    task: str
    input_sha256: str = Field(description="sha256 of `text`")
    text: str = Field(description="the input as decoded: normalised and redacted as backfill does (never a secret)")
    hint: str | None
    product: str | None
    model_sha256: str = Field(description="the GGUF that answered")
    retrieval: list[Retrieved] | None = Field(description="the worked examples, most similar first; "
                                                          "null with --no-retrieval")
    answer: str = Field(description="the model's answer, as decoded")
    closed_by_decoder: bool
    problems: list[str] = Field(description="why the model's answer failed validation (empty: accepted)")
    escalated: bool = Field(description="the teacher was asked (only after a failure, only when allowed)")
    teacher_answer: str | None = None
    teacher_problems: list[str] | None = None
    verdict: ReplayVerdict
    label: dict | None = Field(description="the accepted label (the model's or the teacher's); null when none")
