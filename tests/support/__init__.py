"""Helpers the tests share: known-answer models and the one-line error check."""
