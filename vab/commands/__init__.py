"""The `vab` console script's sub-commands, one module each (`vab.cli` dispatches).

In: command-line arguments.  Out: what the library stages make (data sets, soundtracks,
indexes, reports), with every user error as one line and a non-zero exit.  Commands parse,
validate and print; the work itself lives in the stages above.
"""
