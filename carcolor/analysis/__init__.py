"""Stage 3, analysis: every cell's results into tidy tables, the small-sample statistics and the lab's
claims decided from them. Imports earlier stages and the core, never the reporting."""
