"""The offline demo: a tiny model kit built locally, and the demo league."""
