"""Regenerate paper tables and curves from result files (reads files; imports no training code)."""
