"""Detection: decide from liveness readings which hosts are dead, isolated or held (pure)."""
