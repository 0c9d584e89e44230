"""User-facing errors.

Anything raised as ``PrunebenchError`` is a problem with the user's input or
environment; the CLI prints its message as one line and exits non-zero.
Messages name the problem and the fix.
"""


class PrunebenchError(Exception):
    """An error the user can fix; the message says how."""


class UnknownNameError(PrunebenchError, KeyError):
    """A name (task, model shape, space, strategy...) that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]
