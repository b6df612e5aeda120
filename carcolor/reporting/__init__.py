"""Stage 4, the report: numbers and phrases from the tables, figures, each cell's notebook page, and
rendering report/index.qmd (Quarto, or the offline pandoc + Typst renderer)."""
