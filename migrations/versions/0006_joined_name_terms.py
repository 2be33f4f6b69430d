"""Search terms for names joined by an apostrophe or a hyphen: "obrien" finds O'Brien.

The application now also stores each such word without its apostrophe or hyphen
(``crm.text.search_terms``); this fills in those words for the leads already there. The
folding is written out here as it is today, so this revision keeps doing what it did.

Revision ID: joined_name_terms
Revises: queue_filter_counts
Create Date: 2026-11-25 23:30:00

"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'joined_name_terms'
down_revision = 'queue_filter_counts'
branch_labels = None
depends_on = None

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_JOINED = re.compile(r"[^\W_]+(?:['’‐-][^\W_]+)+", re.UNICODE)
_MARKS = ("'", "’", "‐", "-")


def _fold(text):
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _joined_terms(*parts):
    words = []
    for part in parts:
        for joined in _JOINED.findall(_fold(part or "")):
            word = "".join(_WORD.findall(joined))[:100]
            if word not in words:
                words.append(word)
    return words


def upgrade():
    bind = op.get_bind()
    leads = sa.table("leads", sa.column("id"), sa.column("first_name"), sa.column("last_name"))
    terms = sa.table("lead_search_terms", sa.column("lead_id"), sa.column("term"))
    marked = sa.or_(
        *[column.contains(mark, autoescape=True) for mark in _MARKS for column in (leads.c.first_name, leads.c.last_name)]
    )
    wanted = {
        lead_id: _joined_terms(first, last)
        for lead_id, first, last in bind.execute(sa.select(leads.c.id, leads.c.first_name, leads.c.last_name).where(marked))
    }
    ids = [lead_id for lead_id, words in wanted.items() if words]
    have = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        have |= set(bind.execute(sa.select(terms.c.lead_id, terms.c.term).where(terms.c.lead_id.in_(chunk))))
    rows = [
        {"lead_id": lead_id, "term": word}
        for lead_id in ids
        for word in wanted[lead_id]
        if (lead_id, word) not in have
    ]
    if rows:
        bind.execute(sa.insert(terms), rows)


def downgrade():
    # The joined words are only extra ways to find a lead; the older code ignores them.
    pass
