"""The quest router's next-item selection at scale, on PostgreSQL.

Fills the database with open quest items (1M by default, all five types, random priorities, one
in twenty written by one of the bench's users so the own-work rule is exercised) and active users
(10,000 by default) in a few set-based statements (generate_series), gives every user a history
(answers on the items the router hands out first, which each later claim must walk past), then
times `collection.services.assignment_claim` (the whole service: the live-lease check, and the
claim statement: partial-index walk, FOR UPDATE SKIP LOCKED, slot update and the assignment's
insert), for a random user and quest type per call. After each timed claim the user finishes the
item (not timed), as a person would, so the next claim is a new selection, never a resumed lease.

Run it under the shared bench lock:

    flock /tmp/ludus-bench.lock .venv/bin/python bench/router.py --items 1000000 --users 10000

With DATABASE_URL set that database is used (migrated here); the bench's rows are removed at the
end. The last line is one JSON object: items, users, p50_ms, p99_ms (target: p99 <= 20 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid

from _harness import percentile, setup_django


def fill(items: int, users: int, tag: str) -> tuple[list[int], int, int]:
    """Insert the users and items; returns (user ids, first item id, last item id)."""
    from django.contrib.auth.models import User
    from django.db import connection

    from collection.models import QuestItem

    item_table, user_table = QuestItem._meta.db_table, User._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {user_table} (username, password, is_superuser, first_name, last_name,
                                          email, is_staff, is_active, date_joined)
                SELECT 'bench-' || %s || '-' || n, '!', false, '', '', '', false, true, now()
                FROM generate_series(1, %s) AS n
                RETURNING id""",
            [tag, users],
        )
        user_ids = [row[0] for row in cursor.fetchall()]
        first_user = min(user_ids)
        cursor.execute(
            f"""INSERT INTO {item_table} (type, status, priority, overlap, open_slots, prompt,
                                          replies, author_id, source, created_at)
                SELECT (ARRAY['rank','label','reference','image','review'])[1 + n %% 5], 'open',
                       (random() * 3)::int, 3, 3, 'bench prompt ' || n,
                       '[{{"key": "a", "text": "one"}}, {{"key": "b", "text": "two"}}]'::jsonb,
                       CASE WHEN n %% 20 = 0 THEN %s + (n %% %s) END, '', now()
                FROM generate_series(1, %s) AS n
                RETURNING id""",
            [first_user, users, items],
        )
        item_ids = [row[0] for row in cursor.fetchall()]
    return user_ids, min(item_ids), max(item_ids)


def history(user_ids: list[int], per_user: int) -> None:
    """Each user has already answered `per_user` of the items the router offers first, so a claim
    walks past them (the NOT EXISTS on the user's assignments) as it would in a busy system."""
    from django.db import connection

    from collection.models import Assignment, QuestItem

    item_table, assignment_table = QuestItem._meta.db_table, Assignment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH top AS (
                    SELECT id, row_number() OVER () AS k FROM (
                        SELECT id FROM {item_table} WHERE status = 'open'
                        ORDER BY priority DESC, id LIMIT %s) t)
                INSERT INTO {assignment_table} (item_id, user_id, state, leased_until, outcome,
                                                 created_at, submitted_at)
                SELECT top.id, u.id, 'submitted', now(), '', now(), now()
                FROM unnest(%s::bigint[]) AS u(id) JOIN top ON top.k <= %s
                ON CONFLICT DO NOTHING""",
            [per_user, user_ids, per_user],
        )
    # A table that has lived a while has been vacuumed: without it the index scans walk the dead
    # entries a previous run's DELETE left and the visibility map is empty.
    for table in (item_table, assignment_table):
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")


def measure(user_ids: list[int], requests: int, seed: int) -> list[float]:
    from collection import services
    from collection.models import Assignment, QuestType

    rng = random.Random(seed)
    types = list(QuestType.values)
    timings = []
    for _ in range(requests):
        user_id = rng.choice(user_ids)
        quest_type = rng.choice(types)
        started = time.perf_counter()
        assignment = services.assignment_claim(user_id=user_id, quest_type=quest_type)
        timings.append((time.perf_counter() - started) * 1000)
        if assignment is not None:
            Assignment.objects.filter(id=assignment.id).update(state="submitted")
    return timings


def clean(tag: str, first_item: int, last_item: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    from collection.models import Assignment, QuestItem

    # Django cascades in Python; set-based deletes go child first.
    with connection.cursor() as cursor:
        for table, column in (
            (Assignment._meta.db_table, "item_id"),
            (QuestItem._meta.db_table, "id"),
        ):
            cursor.execute(
                f"DELETE FROM {table} WHERE {column} BETWEEN %s AND %s", [first_item, last_item]
            )
    User.objects.filter(username__startswith=f"bench-{tag}-").delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=20, help="answers per user beforehand")
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    setup_django()
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    user_ids, first_item, last_item = fill(args.items, args.users, tag)
    history(user_ids, args.history)
    print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    try:
        measure(user_ids, args.warmup, args.seed + 1)
        timings = measure(user_ids, args.requests, args.seed)
    finally:
        clean(tag, first_item, last_item)
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    print(f"{len(timings)} claims: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(timings):.2f} ms")
    result = {
        "items": args.items,
        "users": args.users,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
