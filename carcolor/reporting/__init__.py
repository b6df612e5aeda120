"""Stage 4, the report: what it states, computed from the tables (its words are in report/index.qmd),
its figures, each cell's notebook page, and rendering report/index.qmd (Quarto, or the offline renderer)."""
