"""Sub-commands of the ``attnkit`` CLI: one module each, with ``add_arguments`` and ``main``."""
