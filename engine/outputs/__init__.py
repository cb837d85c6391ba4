"""What runs become: tables, plots, exports and live Prometheus metrics."""
