"""make bench: the figures users compare, each beside a baseline measured in the same run.

Run: python -m tools.bench [--only build,data,train,decode,serve,sha256,fidelity] [--sizes 10000,100000] [--task T]
Out: reports/bench.json (sections merged, so --only refreshes one) and the README table
     between the bench markers.

Sections (issue #6):
  build   a clean clone of HEAD built from scratch, stage by stage (full_build_s,
          peak_rss_mb), its outputs compared with the committed dvc.lock (bit-identical
          check; fidelity_share_of_eval: each task's fidelity checks against the rest of its eval),
          then one eval.* param changed (incremental_ratio), then a no-op
          `dvc repro` against `dvc status` (noop_repro_s), and the same two commands on
          a chain of as many empty `cp` stages (dvc_floor: DVC's own no-op ratio)
  data    backfill -> export on entries resampled from the real snapshot, against a
          plain-Python `json` implementation of the same steps (entries_per_s); at the
          largest size, the floor: four stage start-ups plus the shared labeler's time
          spread over every core, and the largest ratio it leaves (floor); peak RSS of each
          stage; then the stages alone at --scale entries (10M: time and peak RSS)
  train   20 LoRA steps with the train stage's settings (padding-free) against a plain
          transformers Trainer padding each batch (train_tokens_per_s, real-token share)
  decode  the Q8_0 GGUF under eval's grammar against transformers `generate` on the
          merged model, same prompts (decode_tokens_per_s)
  sha256  pinning the GGUFs (hashlib, as quantize/eval do) against `sha256sum`
  fidelity  every task's fidelity checks inside a cold eval (answers decoded and rows forced,
          not memoised), against the rest of that eval, run on the built models in a scratch
          copy (fidelity_share_of_eval; issue 20: <= 10%); the copied eval must reproduce the
          committed metrics.json and fidelity.json byte for byte
  serve   `make serve` (the promoted GGUF, loopback) at 1 and 4 concurrent clients: requests/s
          and p50/p95 latency, against predict's in-process decoder on the same messages;
          the retrieval index's latency per query over the whole RAG export (issue 22)

data, train, decode, serve and sha256 measure one task (--task; default: the only one params.yaml
lists) and need it built in the working tree (models/base, models/<task>/, data/<task>/exports);
`build` builds every task and needs a committed, clean tree; `fidelity` measures every task
(~30 min: two cold evals). Absolute times are printed; only
ratios carry targets, and no test asserts a time.

Modules: common (paths, timing, shell), model (sha256, decode, train), pipeline (data,
build), fidelity, serve (serve, retrieval), report (the README table, main).
"""
