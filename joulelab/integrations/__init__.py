"""Trainer callbacks: JouleLab metering inside Lightning and the Hugging Face Trainer."""
