"""The ops dashboard: one page and its static assets, reading the KPI and health APIs from the browser."""
