"""Quality control of contributions: reliabilities, agreement and anomalous voters.

Pure numpy/scipy (no Django imports), on the public battle-log format and plain label rows;
``python -m collection.quality`` is its command line.
"""

from arena.ratings.counts import reliability_weight  # a vote's weight from its judge's reliability

from .labels import LabelFit, dawid_skene, krippendorff_alpha
from .votes import (
    GoldAnswers,
    VoterReport,
    assess_voters,
    one_sided,
    one_sided_group,
    reliability,
    sequential_test,
    too_fast,
    vote_p_values,
)

__all__ = [
    "GoldAnswers",
    "LabelFit",
    "VoterReport",
    "assess_voters",
    "dawid_skene",
    "krippendorff_alpha",
    "one_sided",
    "one_sided_group",
    "reliability",
    "reliability_weight",
    "sequential_test",
    "too_fast",
    "vote_p_values",
]
