"""Stage 5, after the report: did a run reproduce another? A finished run packed as one citable archive
(`carcolor archive`), and any run compared with a reference, metric by metric, with a verdict
(`carcolor compare`). Both read finished results folders; neither is a rule of the workflow."""
