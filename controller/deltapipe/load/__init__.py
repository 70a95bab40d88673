"""Loading files into datasets: streaming into staging with COPY, then validate, diff and apply in SQL."""
