"""Proving a new fine-tune before users get it: the model registry, shadow traffic judged side by side, and
the staged, gated promotion of a candidate (registry.py, mirror.py, judge.py, report.py, promotion.py)."""
