"""Observability: counters the hot path bumps, and the pieces that read them."""
