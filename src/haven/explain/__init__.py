"""Explanations of failures: symptoms in, evidence gathered, ranked by haven.diagnosis, persisted.

haven.explain.explainer is the one place that joins the pure ranker (haven.diagnosis), the topology
(haven.topology), the evidence ports (haven.evidence) and the store.
"""
