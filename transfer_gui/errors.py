"""The two kinds of failure every front end tells apart, at the bottom of the package.

* :class:`UserError`: a problem the person can fix. Its message names the file, field or
  folder concerned and says what to do; the command line prints it as one line and exits 2,
  the trainer returns it as a failed run with ``bad_input`` set, the window shows it as is.
* :class:`Cancelled`: work that stopped because someone asked it to (Stop, a cancelled scan
  or download). Not a failure.

Everything else is a fault of the program or the machine and is reported with its type.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names what is wrong and what to do."""


class Cancelled(Exception):
    """Stopped or cancelled on request."""
