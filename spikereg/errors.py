"""The one base of every error SpikeReg raises for a user to read.

Each error class in ``spikereg`` and ``lava_export`` derives from
:class:`SpikeRegError` and keeps its builtin base (``ValueError`` or
``RuntimeError``), so callers may catch either; the command line catches
:class:`SpikeRegError` to print one line and exit 1.
"""


class SpikeRegError(Exception):
    """An expected failure whose message, one line, names the file or option and what was expected."""
