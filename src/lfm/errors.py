"""The one exception type for bad user input (config values, paths, files)."""


class InputError(ValueError):
    """Bad user input. The message names the config key or path and how to fix it.

    The entry points print it as a single line and exit non-zero, without a traceback.
    """
