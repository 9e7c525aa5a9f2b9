"""Config files for ``experiments.run`` (``--config=experiments/configs/<name>.py:<arg>``)."""
