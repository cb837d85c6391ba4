"""The lab's widgets: the views inside its tabs (lab form, live view, history, results, presets) and the graphs."""
