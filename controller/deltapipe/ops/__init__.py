"""Operating deltapipe: run listings, the HTML run report, Prometheus metrics, the demo."""
