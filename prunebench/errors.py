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


def as_os_error(error: BaseException) -> OSError | None:
    """``error`` as the operating-system error it reports: libraries that write files (safetensors, torch.save,
    pyarrow) wrap a full disk in their own exception types, with the system's message inside."""
    import errno
    import os
    import re

    if isinstance(error, OSError):
        return error
    text = str(error)
    number = re.search(r"os error (\d+)|\[Errno (\d+)\]", text)
    if number:
        code = int(number.group(1) or number.group(2))
        return OSError(code, os.strerror(code))
    if "No space left on device" in text or "file write failed" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def os_error_line(error: OSError) -> str:
    """An operating-system error as one line: what was being written or read, the system's reason, what to do."""
    import errno

    where = f" {error.filename}" if getattr(error, "filename", None) else ""
    text = str(error).strip()
    reason = error.strerror or (text.splitlines()[0] if text else type(error).__name__)
    fixes = {
        errno.ENOSPC: "free space and run the same command again (train: with --resume): finished work is kept",
        errno.EDQUOT: "free space (disk quota) and run the same command again (train: with --resume): finished "
        "work is kept",
        errno.EROFS: "the place is read-only: choose a writable --out, or remount it writable",
        errno.EACCES: "check the permissions there, or choose another --out",
        errno.EPERM: "the file may be immutable (lsattr) or protected: check it, or choose another --out",
    }
    fix = fixes.get(error.errno, "check the path and the disk, then run the same command again")
    return f"cannot use{where} ({reason}); {fix}"


# --- stopping on a signal: SIGTERM (docker stop, Slurm, systemd) is handled like Ctrl-C -----------------------


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the process is asked to stop; ``signal_number`` says by which signal."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number

    def __str__(self) -> str:
        import signal

        return signal.Signals(self.signal_number).name


_stop: dict = {"pending": None, "polling": 0}


def _on_stop_signal(signal_number: int, frame) -> None:
    if _stop["polling"] and _stop["pending"] is None:
        _stop["pending"] = signal_number  # a loop that polls stops at its next safe point (``check_stop``)
        return
    raise Interrupted(signal_number)  # otherwise, or on a second signal, at once (as Ctrl-C does)


def install_stop_handlers() -> None:
    """SIGTERM and SIGINT raise ``Interrupted`` (a KeyboardInterrupt), or ask a polling loop to stop at its next
    safe point; only from the main thread (signal handlers live there)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_stop_signal)
        signal.signal(signal.SIGINT, _on_stop_signal)


class stop_signals_handled:
    """Within this block SIGTERM and SIGHUP go to the stop handler (``Interrupted``, as Ctrl-C), so that ``finally``
    blocks run (Python's default on SIGTERM exits at once); the handlers before are put back on exit. A no-op
    outside the main thread (signal handlers live there)."""

    def __enter__(self):
        import signal
        import threading

        self._before = {}
        if threading.current_thread() is threading.main_thread():
            self._before = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._before.items():
            signal.signal(sig, handler)


class stop_at_safe_points:
    """Within this block a stop signal waits for the next ``stop_requested`` check (e.g. after a training step)."""

    def __enter__(self):
        _stop["polling"] += 1
        return self

    def __exit__(self, *exc) -> None:
        _stop["polling"] -= 1


def stop_requested() -> int | None:
    """The signal that asked to stop, while a polling loop has not acted on it yet."""
    return _stop["pending"]


def check_stop() -> None:
    """Raise ``Interrupted`` for a stop signal that arrived during a polling block."""
    pending, _stop["pending"] = _stop["pending"], None
    if pending is not None:
        raise Interrupted(pending)
