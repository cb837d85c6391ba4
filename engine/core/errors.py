"""The one base class of every error JouleLab raises for a user to read, and the exit codes.

A JouleLabError's message is one line that says what is wrong and, where there is one, the fix;
its `exit_code` is what the command line exits with. The CLI and the lab each catch it in one
place; code that handles one kind of error differently still catches that class by name.
"""

from __future__ import annotations

# The command line's exit codes: 0 ok, 1 a run failed, 2 bad usage or input, 130 interrupted
# (SIGINT, Ctrl-C); 143 terminated (SIGTERM) and 129 hung up (SIGHUP): 128 + the signal's
# number, as a shell reports a process the signal ended.
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_HANGUP, EXIT_TERMINATED = 129, 143


class JouleLabError(Exception):
    """An error with a one-line message for the user. Most are input the user can fix (exit 2);
    a subclass for a failure of the machine or a run sets its own `exit_code`."""

    exit_code: int = EXIT_USAGE
