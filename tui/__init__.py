"""JouleLab's Textual app: a view of the engine. All running goes through engine.runner."""
