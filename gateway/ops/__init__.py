"""Operating a deployment: first-run set-up, `gateway check`, `gateway backup`, log formats."""
