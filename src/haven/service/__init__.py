"""Service: the engine and the loop that owns it; what `haven serve`, drills and the demo run."""
