"""Reports: a fit or evaluate record rendered as JSON, Markdown or HTML, with figures."""
