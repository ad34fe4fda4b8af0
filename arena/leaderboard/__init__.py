"""Leaderboards: the counted vote set, snapshots, exports and the page model.

- ``selectors``: reads (the counted vote set, exclusions, snapshots, sampling weights, fairness)
- ``boards``: the fits of one snapshot, from its count rows and battle lines (no database)
- ``services``: the writes (``leaderboard_refresh``, ``leaderboard_publish_live``,
  ``sampling_weights_record``, ``voter_hold`` / ``voter_hold_review``)
- ``export``: the snapshot as JSON, CSV and its battle log as JSON Lines
- ``page``: what the page shows for one method and category (plots from ``arena.svg``)

Only tasks fit: the beat's full refresh (``leaderboard_refresh``: every board, bootstrap
intervals) and, a second or so after a counted vote, the live publish (``leaderboard_publish_live``:
the last full snapshot's counts plus the votes since, Bradley-Terry with sandwich intervals; the
other boards are the full snapshot's). Pages read the latest snapshot. A full snapshot is
reproducible: its battles export is the canonical battle-log JSONL of its counted votes, its
``vote_hash`` is that file's sha256, and ``python -m arena.ratings`` on the file with the stored
parameters (``params["commands"]``) prints the stored boards exactly.

Counted votes: a pairwise verdict on an anonymous battle, cast while both identities were hidden,
with no identity leak and no flag, on two answers that both finished (not in error, not stopped),
by a voter not held for review (``VoterHold``: set by the anomaly scan, cleared by staff).
Every other pairwise vote is excluded and counted per reason. Every count published (the boards'
battles, the fairness report) is a count of counted votes: a battle nobody voted on shows nowhere.
"""
