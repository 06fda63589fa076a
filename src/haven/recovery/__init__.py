"""Recovery: pure planning plus the persisted, resumable step executor."""
