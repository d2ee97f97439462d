"""The Pulumi program: typed settings, one ComponentResource per concern, wired in `__main__.py`."""
