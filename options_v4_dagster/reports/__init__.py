"""Charts and reports (plotly HTML files a trader opens in a browser)."""
