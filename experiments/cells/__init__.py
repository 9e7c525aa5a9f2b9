"""Cells of one's own, written as a researcher writes them, for experiment configs to sweep."""
