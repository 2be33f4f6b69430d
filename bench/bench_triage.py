"""Benchmark the complaint tagger: load time, memory added, throughput, long messages.

Run from the repository root: ``python bench/bench_triage.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STORY = (
    "Hello, I am 52 and I work in a warehouse. About three months ago I started getting pain in my "
    "lower back, mostly on the right side, after a long shift lifting boxes. At first I thought I pulled "
    "something and it would go away with rest and ice. My family doctor gave me muscle relaxers and sent "
    "me to physical therapy, which I did twice a week for six weeks, but honestly it did not help much. "
    "Now the pain shoots down my right leg to my foot when I sit for more than twenty minutes, and my toes "
    "feel tingly at night. I had an MRI last month and they said there is a bulging disc at L4-L5. No "
    "problems with my bladder or bowels, and no weakness that I can tell. My brother had back surgery "
    "years ago and he says you are the best. I would like to know if I am a candidate. Please call me. "
)


def rss_mib() -> float:
    """Return this process's resident memory in MiB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(text: str, today: date, runs: int) -> float:
    """Time tag_complaint on one text, returning the median in milliseconds."""
    from crm.triage import tag_complaint

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        tag_complaint(text, today=today)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    """Print the tagger's load time, memory, throughput and long-message timings."""
    import crm  # noqa: F401  the app package (Flask) is in every worker anyway: not the tagger's cost

    before = rss_mib()
    started = time.perf_counter()
    from crm.triage import tag_complaint, warm_up

    warm_up()
    load_s = time.perf_counter() - started
    after = rss_mib()

    rows = []
    for name in ("triage_corpus.jsonl", "triage_corpus_holdout.jsonl"):
        with (ROOT / "tests" / "data" / name).open(encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    today = date(2026, 11, 26)
    for row in rows:  # one warm pass, so the timed passes measure steady state
        tag_complaint(row["text"], today=today)
    started = time.perf_counter()
    passes = 5
    for _ in range(passes):
        for row in rows:
            tag_complaint(row["text"], today=today)
    per_second = passes * len(rows) / (time.perf_counter() - started)

    text_1k = (STORY * 2)[:1_000]
    text_10k = (STORY * 15)[:10_000]
    text_100k = (STORY * 140)[:100_000]
    print(f"load (import + build pipeline): {load_s:.2f} s")
    print(f"memory added to the process:    {after - before:.0f} MiB RSS ({before:.0f} -> {after:.0f} MiB)")
    print(f"throughput over the corpus:     {per_second:,.0f} messages/s ({len(rows)} messages x {passes})")
    print(f"1,000-character message:        {median_ms(text_1k, today, 200):.2f} ms (median)")
    print(f"10,000-character message:       {median_ms(text_10k, today, 30):.1f} ms (median)")
    print(f"100,000-character message:      {median_ms(text_100k, today, 5):.0f} ms (median)")
    print(f"memory after the long messages: {rss_mib():.0f} MiB RSS")


if __name__ == "__main__":
    main()
