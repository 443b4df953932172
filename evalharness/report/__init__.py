"""Reports: rich terminal tables, Markdown and HTML. Reads only run directories."""
