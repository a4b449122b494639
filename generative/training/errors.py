"""The failures a run expects (bad input, a non-finite loss, a damaged checkpoint, a busy workdir),
and how the command-line launchers report them: one line on stderr, exit status 1, no traceback
unless `--debug` is given.

Every check in the library raises ValueError (or one of the RunError classes here) with a message
that names the argument or config field and the value it expected, so that message alone is what
a user needs to see.
"""

import functools
import sys

from absl import flags


class RunError(Exception):
    """A run stopped for a reason its message states in full (not a bug)."""


class NonFiniteError(RunError):
    """The loss, a gradient norm or the state became NaN or infinite."""


class CheckpointError(RunError):
    """A checkpoint that is missing, damaged, or does not fit the config."""


class CheckpointMismatchError(CheckpointError):
    """The stored shapes or dtypes differ from those the config gives (no fallback helps)."""


class WorkdirError(RunError):
    """The workdir cannot be used: not a writable directory, in use, or its config differs."""


EXPECTED = (RunError, ValueError)


def report_expected_errors(main):
    """`main` for absl's app.run, printing an expected error as one line (exit 1) unless --debug
    (a flag this defines; call it at a launcher's module level, before app.run parses flags)."""
    if "debug" not in flags.FLAGS:
        flags.DEFINE_bool("debug", False, "Show the traceback of an expected error too.")

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except EXPECTED as e:
            if flags.FLAGS.debug:
                raise
            print(f"error: {e} (--debug shows the traceback)", file=sys.stderr)
            sys.exit(1)

    return wrapped
