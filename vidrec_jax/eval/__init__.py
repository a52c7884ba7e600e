"""Eval stage: metrics and evaluators."""
