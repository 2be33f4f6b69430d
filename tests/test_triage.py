"""Tests of the complaint tagger against PRODUCT §3, issue 4 and the labelled corpora."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from crm import triage
from crm.triage import (
    ALL_TAGS,
    RED_FLAG_ADVICE,
    TAG_LABELS,
    Evidence,
    Explanation,
    SetAside,
    explain_complaint,
    format_explanation,
    is_urgent,
    tag_complaint,
    warm_up,
)

DATA = Path(__file__).parent / "data"
THURSDAY = date(2026, 11, 26)


def load_corpus(name: str) -> list[dict]:
    """Read one labelled corpus file: one {"text", "tags", "today"?} object per line."""
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


MAIN = load_corpus("triage_corpus.jsonl")
HOLDOUT = load_corpus("triage_corpus_holdout.jsonl")


def today_of(row: dict) -> date | None:
    """Return the corpus row's fixed date, if it has one."""
    return date.fromisoformat(row["today"]) if row.get("today") else None


def scores(rows: list[dict]) -> dict[str, tuple[float, float, int, int, int]]:
    """Compute per-tag precision, recall and counts of the tagger over corpus rows."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row in rows:
        got = set(tag_complaint(row["text"], today=today_of(row)))
        expected = set(row["tags"])
        tp.update(got & expected)
        fp.update(got - expected)
        fn.update(expected - got)
    table = {}
    for tag in ALL_TAGS:
        precision = tp[tag] / (tp[tag] + fp[tag]) if tp[tag] + fp[tag] else 1.0
        recall = tp[tag] / (tp[tag] + fn[tag]) if tp[tag] + fn[tag] else 1.0
        table[tag] = (precision, recall, tp[tag], fp[tag], fn[tag])
    return table


def print_table(title: str, table: dict[str, tuple[float, float, int, int, int]]) -> None:
    """Print a per-tag precision/recall table (shown with pytest -s or -rP)."""
    print(f"\n{title}\n{'tag':<26} {'prec':>5} {'rec':>5} {'tp':>4} {'fp':>3} {'fn':>3}")
    for tag, (precision, recall, tp, fp, fn) in table.items():
        print(f"{tag:<26} {precision:5.2f} {recall:5.2f} {tp:4d} {fp:3d} {fn:3d}")


# Issue 4's table, exactly as written ("today a Thursday").
ISSUE_TABLE = [
    ("Denies numbness; my low back spasms started Monday.", ["duration:acute", "region:lower"]),
    (
        "Calling for my mom, 81, stenosis at L3-4, her legs ache when she walks to the mailbox, "
        "PT twice no help",
        ["condition:stenosis", "history:failed_pt", "radiating:leg", "region:lower"],
    ),
    ("My brother had a herniated disc. I just have a stiff neck.", ["region:upper"]),
    ("if it starts going down my leg should I come in?", []),
    (
        "peeing myself since the weekend and my back is killing me",
        ["duration:acute", "red_flag:bowel_bladder"],
    ),
    (
        "lumbar pain x 2 months, and this week my legs started giving out",
        ["duration:chronic", "red_flag:weakness", "region:lower"],
    ),
    (
        "T-boned at an intersection Friday, mid back pain both sides",
        ["duration:acute", "red_flag:trauma", "region:mid", "side:left", "side:right"],
    ),
    ("ER said not kidney stones. Right flank pain into my low back.", ["region:lower", "side:right"]),
    ("PT has been great, almost pain free", []),
]


@pytest.mark.parametrize(("text", "expected"), ISSUE_TABLE)
def test_issue_table(text: str, expected: list[str]) -> None:
    assert tag_complaint(text, today=THURSDAY) == expected


def test_non_english_message_does_not_raise() -> None:
    assert set(tag_complaint("¿Pueden llamarme? Me duele la espalda")) <= set(ALL_TAGS)


# PRODUCT §3: the table's patient words and the rules' examples.
PRODUCT_RULES = [
    ("stiff neck and pain between my shoulder blades", ["region:upper"]),
    ("mid back spasm that wraps around my ribs", ["region:mid"]),
    ("my low back locks up", ["region:lower"]),
    ("right side of my lower back", ["region:lower", "side:right"]),
    ("shoots down my left leg", ["radiating:leg", "side:left"]),
    ("MRI says bulging disc at L4-L5", ["condition:herniated_disc", "region:lower"]),
    ("told I might have stenosis", ["condition:stenosis"]),
    ("pulled something lifting a box", ["condition:muscle_strain"]),
    ("6 weeks of PT and no better", ["history:failed_pt"]),
    ("started yesterday", ["duration:acute"]),
    ("back pain on and off for two years", ["duration:chronic"]),
    ("hard to control my bladder since Monday", ["duration:acute", "red_flag:bowel_bladder"]),
    ("my foot drags when I walk", ["red_flag:weakness"]),
    ("rear-ended last week", ["duration:acute", "red_flag:trauma"]),
    ("had kidney stones before", ["nonspinal:organ"]),
    # Negation, and its reach ending with the clause.
    ("no numbness", []),
    ("MRI showed no herniation", []),
    ("haven't tried PT yet", []),
    ("kidney stones ruled out", []),
    ("denies bladder problems, no loss of bladder control", []),
    ("No numbness in my legs, but my low back aches", ["region:lower"]),
    # Hypotheticals.
    ("if I ever lose bladder control I'll go to the ER", []),
    # Whose complaint.
    ("calling for my father, he has stenosis", ["condition:stenosis"]),
    ("my mother had stenosis", []),
    ("a friend's bulging disc", []),
    # Suspicion counts.
    ("could it be a herniated disc?", ["condition:herniated_disc"]),
    # Implied region, sciatica, bare back.
    ("C5-6", ["region:upper"]),
    ("cervical", ["region:upper"]),
    ("T7", ["region:mid"]),
    ("thoracic", ["region:mid"]),
    ("L5-S1", ["region:lower"]),
    ("tailbone", ["region:lower"]),
    ("sciatica", ["radiating:leg"]),
    ("my back hurts", []),
    # Sides.
    ("pain on both sides", ["side:left", "side:right"]),
    ("bilateral leg pain", ["radiating:leg", "side:left", "side:right"]),
    # Failed PT means PT that did not help enough.
    ("PT helped a little but I still can't work", ["history:failed_pt"]),
    ("discharged from PT for no progress", ["history:failed_pt"]),
    ("PT is going well", []),
    # Look-alikes.
    ("aortic stenosis", []),
    ("inguinal hernia", []),
    ("left a voicemail", []),
    ("fell asleep on the couch", []),
    ("gallbladder", ["nonspinal:organ"]),
]


@pytest.mark.parametrize(("text", "expected"), PRODUCT_RULES)
def test_product_rules(text: str, expected: list[str]) -> None:
    assert tag_complaint(text, today=THURSDAY) == expected


@pytest.mark.parametrize(
    ("today", "expected"),
    [(date(2026, 11, 26), ["duration:chronic"]), (date(2026, 3, 20), ["duration:acute"])],
)
def test_duration_counts_from_the_given_today(today: date, expected: list[str]) -> None:
    assert tag_complaint("back pain since March", today=today) == expected


def test_main_corpus_meets_the_quality_bar() -> None:
    table = scores(MAIN)
    print_table(f"Main corpus ({len(MAIN)} messages)", table)
    for tag, (precision, recall, *_counts) in table.items():
        if tag.startswith("red_flag:"):
            assert recall == 1.0, tag
        assert precision >= 0.95, tag
        assert recall >= 0.95, tag


def test_holdout_never_misses_a_red_flag() -> None:
    """Report the held-out fifth, written before any rule and never tuned against."""
    table = scores(HOLDOUT)
    print_table(f"Held-out corpus ({len(HOLDOUT)} messages)", table)
    for tag, (_precision, recall, *_counts) in table.items():
        if tag.startswith("red_flag:"):
            assert recall == 1.0, tag


def test_corpus_is_large_enough_and_covers_every_tag() -> None:
    assert len(MAIN) + len(HOLDOUT) >= 300
    assert len(HOLDOUT) >= 60
    labelled = Counter(tag for row in MAIN for tag in row["tags"])
    assert set(labelled) == set(ALL_TAGS)
    assert sum(1 for row in MAIN if not row["tags"]) >= 40  # negated, someone else's, look-alikes


def test_tag_complaint_is_the_explanation_tags() -> None:
    for row in MAIN[:50]:
        explained = explain_complaint(row["text"], today=today_of(row))
        assert tag_complaint(row["text"], today=today_of(row)) == explained.tags
        assert explained.tags == sorted(set(explained.tags))
        assert set(explained.tags) <= set(ALL_TAGS)


def test_explain_offsets_point_into_the_original_text() -> None:
    for row in MAIN + HOLDOUT:
        text = row["text"]
        explained = explain_complaint(text, today=today_of(row))
        items: list[Evidence | SetAside] = [*explained.evidence, *explained.set_aside]
        for item in items:
            assert text[item.start : item.end] == item.phrase
        assert {e.tag for e in explained.evidence} == set(explained.tags)


def test_explain_names_the_phrase_and_what_was_set_aside() -> None:
    text = "Denies numbness; my low back spasms started Monday."
    explained = explain_complaint(text, today=THURSDAY)
    assert isinstance(explained, Explanation)
    region = [e for e in explained.evidence if e.tag == "region:lower"]
    assert [(e.phrase, e.start, e.end) for e in region] == [("low back", 20, 28)]
    duration = [e for e in explained.evidence if e.tag == "duration:acute"]
    assert [e.phrase for e in duration] == ["Monday"]


def test_explain_gives_why_each_phrase_was_set_aside() -> None:
    text = "My brother had a herniated disc. If my leg goes numb I'll call. No bladder control problems."
    reasons = {(s.tag, s.reason) for s in explain_complaint(text).set_aside}
    assert ("condition:herniated_disc", "someone_else") in reasons
    assert ("radiating:leg", "hypothetical") in reasons
    assert ("red_flag:bowel_bladder", "negated") in reasons


def test_offsets_survive_control_characters_and_wide_characters() -> None:
    text = "\x00\x07😭 İstanbul trip, then my\x00 low back\u200b pain"
    explained = explain_complaint(text)
    assert [(e.phrase, text[e.start : e.end]) for e in explained.evidence] == [("low back", "low back")]


HOSTILE = {
    "empty": "",
    "blank": " \n\t\r ",
    "nul": "\x00" * 50 + "low back pain" + "\x00",
    "control": "".join(chr(c) for c in range(32)) + "neck pain\x7f\x9b",
    "emoji": "🔥🔥 my back 😭😭 👨‍👩‍👧 " * 50,
    "surrogate": "\ud800neck\udfff pain",
    "rtl": "\u202eknab wol\u202c ألم في الظهر",
    "huge": ("My low back hurts since Monday; no numbness. " * 2300)[:100_000],
    "one_long_word": "a" * 100_000,
    "punctuation": ".;!?" * 25_000,
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_never_raises(text: str) -> None:
    tags = tag_complaint(text)
    assert set(tags) <= set(ALL_TAGS)
    assert format_explanation(text)


def test_long_text_takes_linear_time() -> None:
    warm_up()
    short = "My low back hurts since Monday and the pain goes down my left leg. " * 15  # ~1,000 chars
    started = time.perf_counter()
    tag_complaint(short)
    one = time.perf_counter() - started
    started = time.perf_counter()
    tag_complaint(short * 100)
    hundred = time.perf_counter() - started
    assert hundred < max(one, 0.002) * 100 * 3  # linear, with room for a busy machine


def test_urgency_and_labels() -> None:
    assert is_urgent(["region:lower", "red_flag:weakness"])
    assert not is_urgent(["region:lower", "duration:acute"])
    assert not is_urgent([])
    assert set(TAG_LABELS) == set(ALL_TAGS)
    assert tuple(sorted(ALL_TAGS)) == ALL_TAGS
    assert TAG_LABELS["region:lower"] == "Lower back"
    assert "911" in RED_FLAG_ADVICE and "emergency room" in RED_FLAG_ADVICE


def test_format_explanation_lists_tags_evidence_and_set_aside() -> None:
    text = "Denies numbness in my legs; my low back spasms started Monday."
    lines = format_explanation(text, today=THURSDAY).splitlines()
    assert any(line.strip().startswith("region:lower") and '"low back"' in line for line in lines)
    assert any(line.strip().startswith("duration:acute") and '"Monday"' in line for line in lines)
    assert any('"numbness in my legs"' in line and "negated" in line for line in lines)
    urgent = format_explanation("I wet myself and my legs are weak")
    assert urgent.startswith("URGENT") and "911" in urgent


@pytest.fixture
def pipeline_without_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Swap in a pipeline with medspaCy's ConText removed, for this test only."""
    monkeypatch.setattr(triage, "_nlp", triage._build_pipeline(with_context=False))
    yield


def context_cases() -> list[dict]:
    """Pick the corpus messages whose right answer depends on a negation or someone else."""
    cases = []
    for row in MAIN:
        explained = explain_complaint(row["text"], today=today_of(row))
        if any(
            s.reason in {"negated", "someone_else"} and s.tag not in row["tags"] for s in explained.set_aside
        ):
            cases.append(row)
    return cases


def test_context_engine_does_the_work(pipeline_without_context: None) -> None:
    triage._nlp = None  # the corpus cases are picked with the full pipeline …
    warm_up()
    cases = context_cases()
    assert len(cases) >= 40
    triage._nlp = triage._build_pipeline(with_context=False)  # … and rerun without ConText
    still_right = [
        row["text"] for row in cases if tag_complaint(row["text"], today=today_of(row)) == sorted(row["tags"])
    ]
    assert still_right == []


def test_no_patient_words_reach_any_log(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triage, "_nlp", None)  # load inside the capture too
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    for row in MAIN + HOLDOUT:
        explain_complaint(row["text"], today=today_of(row))
        format_explanation(row["text"], today=today_of(row))
    out, err = capfd.readouterr()
    logged = "\n".join([out, err, caplog.text, *(str(r.getMessage()) for r in caplog.records)]).lower()
    words = {w for row in MAIN + HOLDOUT for w in re.findall(r"[a-z]{5,}", row["text"].lower())}
    assert [w for w in sorted(words) if w in logged] == []


def test_pipeline_loads_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[int] = []
    real_build = triage._build_pipeline

    def counting_build(**kwargs: bool) -> object:
        builds.append(1)
        return real_build(**kwargs)

    monkeypatch.setattr(triage, "_nlp", None)
    monkeypatch.setattr(triage, "_build_pipeline", counting_build)
    threads = [threading.Thread(target=tag_complaint, args=("low back pain",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [1]


def test_import_does_not_load_medspacy() -> None:
    code = "import sys; import crm.triage; print('medspacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_forked_worker_uses_the_preloaded_pipeline() -> None:
    warm_up()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker forked after preload_app
        os.close(read)
        os.write(write, json.dumps(tag_complaint("neck pain since Monday", today=THURSDAY)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        child_tags = json.loads(handle.read())
    os.waitpid(pid, 0)
    assert child_tags == ["duration:acute", "region:upper"]


def test_default_today_is_the_clinic_date() -> None:
    assert triage.clinic_today() in {
        date.today(),
        *(date.fromordinal(date.today().toordinal() + d) for d in (-1, 1)),
    }


def test_loading_leaves_the_warning_filters_alone() -> None:
    code = (
        "import warnings; before = list(warnings.filters); import crm.triage; crm.triage.warm_up(); "
        "print(list(warnings.filters) == before)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
