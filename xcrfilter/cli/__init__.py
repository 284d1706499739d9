"""The ``xcrfilter`` command and its sub-commands: argument parsing only.

:mod:`~xcrfilter.cli.main` is the console script (the dispatch to the
sub-commands), :mod:`~xcrfilter.cli.filter` the ``xcrfilter filter``
command; each other sub-command is one module with
``add_arguments(parser)`` and ``run(args)``:
:mod:`~xcrfilter.cli.simulate`, :mod:`~xcrfilter.cli.train`,
:mod:`~xcrfilter.cli.compare`, :mod:`~xcrfilter.cli.spectrum`,
:mod:`~xcrfilter.cli.lacosmic` and :mod:`~xcrfilter.cli.demo`.  The inputs
``xcrfilter filter`` takes are in :mod:`~xcrfilter.cli.sources`, and the
argument types and help layout shared by every command in
:mod:`~xcrfilter.cli.argtypes`, which the filter declarations use for their
options without importing the command line itself.  The work is done by the
library: these modules parse, check the outputs and call it.
"""
