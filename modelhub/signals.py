"""Signals of the serving pool, for the apps above it (the arena) to react to generations without
modelhub knowing about them."""

from django.dispatch import Signal

# Sent with `generation` (its terminal state set) inside the transaction that stores that state:
# what a receiver writes becomes visible together with the finished answer, never after it.
generation_finished = Signal()
