"""Contributors, quests, curation and datasets (built by later issues)."""
