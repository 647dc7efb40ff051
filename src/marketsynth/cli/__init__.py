"""The ``marketsynth`` command-line program."""
