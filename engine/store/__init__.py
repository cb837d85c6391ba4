"""The log directory on disk: load a run, list runs, read its status."""
