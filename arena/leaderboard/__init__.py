"""Leaderboards: the counted vote set, snapshots, exports and the page model.

- ``selectors``: reads (the counted vote set, exclusions, snapshots, sampling weights, fairness)
- ``boards``: the fits of one snapshot, from its count rows and battle lines (no database)
- ``services``: the writes (``leaderboard_refresh``, ``sampling_weights_record``)
- ``export``: the snapshot as JSON, CSV and its battle log as JSON Lines
- ``page``: what the page shows for one method and category (plots from ``arena.svg``)

Only the beat task fits (``leaderboard_refresh``); pages read the latest snapshot. A snapshot is
reproducible: its battles export is the canonical battle-log JSONL of its counted votes, its
``vote_hash`` is that file's sha256, and ``python -m arena.ratings`` on the file with the stored
parameters (``params["commands"]``) prints the stored boards exactly.

Counted votes: a pairwise verdict on an anonymous battle, cast while both identities were hidden,
with no identity leak and no flag, on two answers that both finished (not in error, not stopped).
Every other pairwise vote is excluded and counted per reason. Every count published (the boards'
battles, the fairness report) is a count of counted votes: a battle nobody voted on shows nowhere.
"""
