"""Seeing the research: facts, report, plot, dashboard, terminal view."""
