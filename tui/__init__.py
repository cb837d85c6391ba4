"""JouleLab's Textual app: a view of the engine. All running goes through engine.orchestrate.worker_process."""

import os

# Cap the frame rate: the lab is often used over SSH, and nothing in it moves faster than its
# 4 Hz graph. Textual reads this once, when it is first imported; a user's own setting wins.
os.environ.setdefault("TEXTUAL_FPS", "30")
