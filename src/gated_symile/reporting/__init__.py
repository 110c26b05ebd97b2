"""Results tables and figures aggregated from the evaluated runs."""
