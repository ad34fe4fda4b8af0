"""Battles, turns, votes (issue 4) and rating snapshots (issue 5)."""
