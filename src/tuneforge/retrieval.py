"""Retrieval of worked examples from a task's RAG export: BM25 over word tokens, computed in
DuckDB, and the chat that shows the k best as solved examples before the input. Replay uses it
on new inputs (tuneforge.replay); eval uses it on the gold rows to measure whether worked
examples help the model (eval.retrieval_k). The RAG export never holds a gold row or a
near-duplicate of one (the export stage's gold filter), so eval's examples cannot leak answers.

The index is built once per export and kept in the cache, keyed by the export's SHA-256.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from tuneforge.io import sha256_file
from tuneforge.names import CACHE
from tuneforge.tasks import Task

TOKEN = r"[a-z0-9_]+"  # words, lowercased: the same regex in SQL and Python (query side)
K1, B = 1.2, 0.75      # BM25's usual constants (Robertson; Lucene's defaults)


def tokens(text: str) -> list[str]:
    return re.findall(TOKEN, text.lower())


class Index:
    """BM25 over a RAG export, in a DuckDB file cached per export SHA-256. DuckDB's fts
    extension would do this, but it is downloaded at first use and these machines have no
    internet, so the index is the same few tables in plain SQL."""

    def __init__(self, rag: Path, cache_dir: Path | None = None):
        import duckdb

        self.rag, cache_dir = rag, cache_dir or CACHE / "replay"
        digest = sha256_file(rag)
        path = cache_dir / f"bm25-{digest[:32]}.duckdb"
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=cache_dir)
            os.close(fd)
            os.unlink(tmp)  # DuckDB creates its own file
            try:
                self._build(duckdb.connect(tmp), rag)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self.db = duckdb.connect(str(path), read_only=True)
        self.n, self.avgdl = self.db.execute("SELECT n, avgdl FROM stats").fetchone()

    @staticmethod
    def _build(db, rag: Path) -> None:
        db.execute("""
            CREATE TABLE docs AS
            SELECT row_number() OVER (ORDER BY id) AS d, id, text, hint, product, label::VARCHAR AS label
            FROM read_json(?, format='newline_delimited',
                           columns={'id': 'VARCHAR', 'text': 'VARCHAR', 'hint': 'VARCHAR', 'product': 'VARCHAR',
                                    'label': 'JSON', 'category': 'VARCHAR', 'source_file': 'VARCHAR',
                                    'line': 'BIGINT'})""", [str(rag)])
        db.execute(f"""
            CREATE TABLE terms AS
            SELECT d, term, count(*)::INTEGER AS tf
            FROM (SELECT d, unnest(regexp_extract_all(lower(text), '{TOKEN}')) AS term FROM docs)
            GROUP BY d, term""")
        db.execute("CREATE TABLE doclen AS SELECT d, sum(tf)::INTEGER AS len FROM terms GROUP BY d")
        db.execute("CREATE TABLE df AS SELECT term, count(*)::INTEGER AS df FROM terms GROUP BY term")
        db.execute("CREATE TABLE stats AS SELECT (SELECT count(*) FROM docs) AS n, "
                   "(SELECT avg(len) FROM doclen)::DOUBLE AS avgdl")
        db.close()

    def search(self, query: str, k: int) -> list[dict]:
        """The k best rows for `query`, best first (ties by id: the same answer every run). Each
        row's terms are summed in term order: a parallel sum adds them in whatever order the
        threads finish, so rows with equal scores differed in the last bits from run to run and
        the tie-break by id could not hold (eval's retrieval pass changed a prompt between two
        builds of the same model)."""
        words = sorted(set(tokens(query)))
        if not words or k <= 0:
            return []
        rows = self.db.execute(f"""
            WITH q AS (SELECT unnest(?::VARCHAR[]) AS term),
            scored AS (
                SELECT t.d, sum(ln((? - df.df + 0.5) / (df.df + 0.5) + 1)
                                * t.tf * ({K1} + 1) / (t.tf + {K1} * (1 - {B} + {B} * l.len / ?))
                                ORDER BY term) AS score
                FROM terms t JOIN q USING (term) JOIN df USING (term) JOIN doclen l USING (d)
                GROUP BY t.d)
            SELECT docs.id, docs.text, docs.hint, docs.product, docs.label, scored.score
            FROM scored JOIN docs USING (d)
            ORDER BY scored.score DESC, docs.id LIMIT ?""", [words, self.n, self.avgdl, k]).fetchall()
        return [{"id": r[0], "text": r[1], "hint": r[2], "product": r[3], "label": json.loads(r[4]),
                 "score": round(r[5], 6)} for r in rows]


def bm25(corpus: list[str], query: str) -> list[float]:
    """The same score in plain Python, for the tests (and a reader) to check the SQL against."""
    docs = [tokens(t) for t in corpus]
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for doc in docs:
        s = 0.0
        for term in set(tokens(query)):
            tf = doc.count(term)
            if tf:
                df = sum(term in d for d in docs)
                idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
                s += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(doc) / avgdl))
        out.append(s)
    return out


def messages(task: Task, entry: dict, examples: list[dict],
             fits: Callable[[list[dict]], bool]) -> tuple[list[dict], list[dict]]:
    """The chat with worked examples (the most similar nearest the input), dropping the least
    similar until `fits(messages)`; returns (messages, the examples kept, best first)."""
    kept = list(examples)
    while True:
        chat = [{"role": "system", "content": task.system_prompt}]
        for ex in reversed(kept):  # best last: nearest the input
            chat += [{"role": "user", "content": task.render_user(ex["text"], ex["hint"], ex["product"])},
                     {"role": "assistant", "content": task.render_label(ex["label"])}]
        chat.append({"role": "user", "content": task.render_user(entry["text"], entry["hint"], entry["product"])})
        if not kept or fits(chat):
            return chat, kept
        kept.pop()


def token_fit(count: Callable[[str], int], budget: int) -> Callable[[list[dict]], bool]:
    """messages()'s `fits`: the chat's text in `count`'s tokens, plus 8 a message for the chat
    template's markup, within `budget` (the context less the answer's room)."""
    return lambda chat: count("".join(m["content"] for m in chat)) + 8 * len(chat) <= budget


def example_chats(task: Task, rows: list[dict], index: Index, k: int,
                  fits: Callable[[list[dict]], bool]) -> tuple[list[list[dict]], list[int]]:
    """Each row's chat with its k best worked examples (as many as fit), and how many each shows."""
    chats, shown = [], []
    for r in rows:
        entry = {"text": r["text"], "hint": r.get("hint"), "product": r.get("product")}
        chat, kept = messages(task, entry, index.search(r["text"], k), fits)
        chats.append(chat)
        shown.append(len(kept))
    return chats, shown
