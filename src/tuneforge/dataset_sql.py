"""The data half's set work in DuckDB (issue 23 item 1): gold anti-joins, the stratified split,
the review queue's draw. Each function takes rows from the stage and returns what the stage's
Python loop used to compute, so the outputs stay byte for byte what they were (tests compare
each with a plain-Python reference).

Text folding happens in SQL for ASCII texts: NFKC leaves ASCII unchanged and casefold() is
lower() there, and DuckDB's regexes (RE2) agree with `re` on ASCII word characters. A text
with any other character is folded by tuneforge.text / tuneforge.decontam in Python and handed
over as a column, so one folding rule holds for every text.

Seeded orders are export.seeded_unit's: the first 8 bytes of sha256("seed:part:key") read
big-endian over 2**64, computed in SQL as the same double (UBIGINT -> DOUBLE rounds to nearest,
as Python's int / int does, and dividing by 2**64 is exact), so even the rare ties fall where
Python's stable sort puts them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from tuneforge.decontam import GoldMatcher, Match, levenshtein, words
from tuneforge.text import content_key

# ASCII folding in SQL, the same as tuneforge.text's for ASCII text
SQL_WORDS = "list_filter(regexp_split_to_array(lower(text), '[^a-z0-9]+'), lambda w: w <> '')"
SQL_KEY = "sha256(regexp_replace(lower(text), '[^a-z0-9]+', '', 'g'))"
SQL_IS_ASCII = "strlen(text) = length(text)"  # bytes == characters


def sql_unit(seed: int, part: str, key_sql: str) -> str:
    """export.seeded_unit(seed, part, key) as a SQL expression over the column `key_sql`."""
    return (f"('0x' || substr(sha256('{int(seed)}:{part}:' || {key_sql}), 1, 16))::UBIGINT::DOUBLE"
            " / 18446744073709551616.0")


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory database on every core (DVC runs one stage at a time)."""
    return duckdb.connect()


def _load(con: duckdb.DuckDBPyConnection, name: str, **columns: pa.Array) -> None:
    """A temp table from Arrow columns (one copy, no per-row inserts)."""
    con.register("_arrow", pa.table(columns))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _arrow")
    con.unregister("_arrow")


def _texts_table(con: duckdb.DuckDBPyConnection, name: str, texts: Sequence[str]) -> None:
    """`name`(seq, text, key, words): the content key and the word list of every text, folded
    in SQL when it is ASCII and in Python otherwise."""
    odd = {i: t for i, t in enumerate(texts) if not t.isascii()}
    _load(con, "_raw", seq=pa.array(range(len(texts)), pa.int32()), text=pa.array(texts, pa.string()),
          key=pa.array([content_key(odd[i]) if i in odd else None for i in range(len(texts))], pa.string()),
          words=pa.array([words(odd[i]) if i in odd else None for i in range(len(texts))], pa.list_(pa.string())))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT seq, text,
               CASE WHEN {SQL_IS_ASCII} THEN {SQL_KEY} ELSE key END AS key,
               CASE WHEN {SQL_IS_ASCII} THEN {SQL_WORDS} ELSE words END AS words
        FROM _raw""")


class GoldSets:
    """Every text's exact gold match and near-duplicate matches, computed for a whole batch.

    The same answers as GoldMatcher.matches text by text: the candidates come from the same
    prefix index (a text must share one of a gold entry's rarest words to reach `floor`; a
    tag "word#n" is the n-th repeat of a word, so a text holds it when the word occurs n
    times), the shared-word bound k is the multiset intersection of the two word lists (a sum
    of per-word minimum counts), and only the pairs that pass the bounds are aligned, in
    Python with decontam's word Levenshtein."""

    def __init__(self, matcher: GoldMatcher, gold_keys: Sequence[str]):
        self.matcher = matcher
        self.con = connect()
        _load(self.con, "gold_key", gi=pa.array(range(len(gold_keys)), pa.int32()),
              key=pa.array(list(gold_keys), pa.string()))
        counts = [(i, w, n) for i, ws in enumerate(matcher.words) for w, n in sorted(Counter(ws).items())]
        _load(self.con, "gold_word", gi=pa.array([r[0] for r in counts], pa.int32()),
              word=pa.array([r[1] for r in counts], pa.string()), c=pa.array([r[2] for r in counts], pa.int64()))
        index = [(*t.rsplit("#", 1), i) for t, gis in sorted(matcher.index.items()) for i in gis]
        _load(self.con, "gold_index", word=pa.array([r[0] for r in index], pa.string()),
              n=pa.array([int(r[1]) for r in index], pa.int64()), gi=pa.array([r[2] for r in index], pa.int32()))
        self.con.execute("CREATE TEMP TABLE gold_len AS SELECT gi, sum(c) AS lg FROM gold_word GROUP BY gi")

    def check(self, texts: Sequence[str]) -> list[tuple[int | None, list[Match]]]:
        """For each text: the first gold entry with its content key (or None), and
        GoldMatcher.matches(text): the gold entries scoring >= floor, best first."""
        _texts_table(self.con, "batch", texts)
        exact = dict(self.con.execute(
            "SELECT b.seq, min(g.gi) FROM batch b JOIN gold_key g USING (key) GROUP BY b.seq").fetchall())
        floor, min_contained = self.matcher.floor, self.matcher.min_contained
        pairs = self.con.execute(f"""
            WITH tw AS (SELECT seq, word, count(*) AS c FROM (SELECT seq, unnest(words) AS word FROM batch)
                        GROUP BY seq, word),
            lt AS (SELECT seq, len(words) AS lt FROM batch),
            cand AS (SELECT DISTINCT tw.seq, x.gi FROM tw JOIN gold_index x ON x.word = tw.word AND tw.c >= x.n),
            k AS (SELECT c.seq, c.gi, sum(least(tw.c, gw.c)) AS k FROM cand c
                  JOIN tw ON tw.seq = c.seq JOIN gold_word gw ON gw.gi = c.gi AND gw.word = tw.word
                  GROUP BY c.seq, c.gi),
            bounds AS (SELECT k.seq, k.gi, k.k::DOUBLE / greatest(gl.lg, lt.lt) >= {floor!r} AS try_edit,
                              gl.lg >= {min_contained} AND lt.lt > gl.lg AND k.k::DOUBLE / gl.lg >= {floor!r}
                              AS try_contained
                       FROM k JOIN gold_len gl USING (gi) JOIN lt USING (seq))
            SELECT seq, gi, try_edit, try_contained, b.words FROM bounds JOIN batch b USING (seq)
            WHERE try_edit OR try_contained ORDER BY seq, gi""").fetchall()
        near: list[list[Match]] = [[] for _ in texts]
        for seq, gi, try_edit, try_contained, ws in pairs:
            g = self.matcher.words[gi]
            best = None
            if try_edit:
                best = Match(gi, 1 - levenshtein(g, ws) / max(len(g), len(ws)), "edit")
            if try_contained:
                score = 1 - levenshtein(g, ws, free_ends=True) / len(g)
                if best is None or score > best.score:
                    best = Match(gi, score, "contained")
            if best is not None and best.score >= floor:
                near[seq].append(best)
        return [(exact.get(i), sorted(found, key=lambda m: (-m.score, m.gold))) for i, found in enumerate(near)]


def _rows_table(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[str, str, str]]) -> None:
    """r(seq, id, cls, product) from (id, class, product) rows."""
    _load(con, "r", seq=pa.array(range(len(rows)), pa.int32()), id=pa.array([r[0] for r in rows], pa.string()),
          cls=pa.array([r[1] for r in rows], pa.string()), product=pa.array([r[2] for r in rows], pa.string()))


def stratified_split(rows: Sequence[tuple[str, str, str]], seed: int, valid_fraction: float
                     ) -> tuple[list[int], list[int]]:
    """rows: (id, class, product). Each (class, product) stratum, in its seeded order, gives
    its first round(n x fraction) members (round half to even, as Python's round) to valid.
    Returns the positions of train and of valid rows, each in the seeded `order` draw."""
    con = connect()
    _rows_table(con, rows)
    # Python's order: strata in sorted (class, product) order, each member list in its split
    # draw, then one stable sort by the order draw; the ORDER BY spells out those ties
    got = con.execute(f"""
        WITH drawn AS (SELECT seq, cls, product, {sql_unit(seed, "split", "id")} AS s,
                              {sql_unit(seed, "order", "id")} AS o FROM r),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY cls, product ORDER BY s, seq) AS rank,
                   count(*) OVER (PARTITION BY cls, product) AS n
            FROM drawn)
        SELECT seq, rank <= round_even(n * {float(valid_fraction)!r}, 0) AS valid
        FROM ranked ORDER BY o, cls, product, s, seq
    """).fetchall()
    return [s for s, v in got if not v], [s for s, v in got if v]


def round_robin_draw(rows: Sequence[tuple[str, str, str]], n: int, seed: int) -> list[int]:
    """rows: (id, class, product). Up to n positions, round-robin over classes and, within a
    class, round-robin over products, each in its seeded sha256(seed:key) order: the review
    queue's draw (tuneforge.review)."""
    con = connect()
    _rows_table(con, rows)
    # turn = a row's place in its product's order; product_rank = its product's place in the
    # class: within a class, round-robin is turn first, then product rank. A class's list is
    # then dealt round-robin with the others the same way.
    got = con.execute(f"""
        WITH keyed AS (
            SELECT seq, cls, product, sha256('{seed}:' || id) AS rid,
                   sha256('{seed}:' || product) AS rp, sha256('{seed}:' || cls) AS rc FROM r),
        inclass AS (
            SELECT seq, cls, rc,
                   row_number() OVER (PARTITION BY cls, product ORDER BY rid, seq) AS turn,
                   dense_rank() OVER (PARTITION BY cls ORDER BY rp, product) AS product_rank
            FROM keyed),
        dealt AS (
            SELECT seq, rc, cls, row_number() OVER (PARTITION BY cls ORDER BY turn, product_rank) AS cturn
            FROM inclass)
        SELECT seq FROM dealt ORDER BY cturn, rc, cls LIMIT {int(n)}
    """).fetchall()
    return [s for (s,) in got]
