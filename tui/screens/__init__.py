"""The lab's screens: the main screen with its tabs, and the modal dialogs."""
