"""Scheduled instance backups with rotation, restores and restore drills (issue 14).

schedule, policy, config, retention and planner are pure (decisions over a snapshot); runner,
restores and drills make the effects as persisted idempotent records through the store and the
cloud's backup port (haven.cloud.backups), as haven.recovery does for evacuations.
"""
