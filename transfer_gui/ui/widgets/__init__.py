"""Reusable widgets: plots, tables, galleries."""
