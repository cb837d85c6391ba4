"""JouleLab's headless core. Never imports textual: the TUI and the CLI are both views of it."""

__version__ = "0.1.0"
