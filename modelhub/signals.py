"""Signals of the serving pool, for the apps above it (the arena) to react to generations without
modelhub knowing about them."""

from django.dispatch import Signal

# Sent with `generation` (its terminal state and text set) just before that state is stored: what a
# receiver writes is visible before the finished answer is, never after it.
generation_finishing = Signal()
