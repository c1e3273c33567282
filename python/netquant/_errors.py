"""Exception classes raised for the C++ engine's errors (``nq::Error``).

Every engine error is a :class:`NetquantError` with the engine's message and a stable ``.code``:

=================  ========================  =================================================
``.code``          class                     also an instance of
=================  ========================  =================================================
invalid_argument   NetquantValueError        ValueError
bad_file           NetquantValueError        ValueError
shape_mismatch     NetquantValueError        ValueError
io                 NetquantIOError           OSError
unsupported        NetquantRuntimeError      RuntimeError
unavailable        NetquantRuntimeError      RuntimeError
out_of_memory      NetquantRuntimeError      RuntimeError
internal           NetquantRuntimeError      RuntimeError
=================  ========================  =================================================

Argument errors caught in Python before the engine runs (a wrong dtype, a non-contiguous array, an unknown
keyword) are plain :class:`TypeError` / :class:`ValueError`.
"""

from __future__ import annotations

__all__ = ["NetquantError", "NetquantValueError", "NetquantIOError", "NetquantRuntimeError"]


class NetquantError(Exception):
    """An error reported by the netquant engine. ``code`` is the engine's stable error-code name."""

    code: str = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NetquantValueError(NetquantError, ValueError):
    """Bad input: an invalid argument, a malformed file, or shapes that disagree."""


class NetquantIOError(NetquantError, OSError):
    """A file could not be opened, read, written or renamed."""


class NetquantRuntimeError(NetquantError, RuntimeError):
    """Unsupported or unavailable (e.g. backend='cuda' without a GPU), out of memory, or an internal error."""


_BY_CODE = {
    "invalid_argument": NetquantValueError,
    "bad_file": NetquantValueError,
    "shape_mismatch": NetquantValueError,
    "io": NetquantIOError,
    "unsupported": NetquantRuntimeError,
    "unavailable": NetquantRuntimeError,
    "out_of_memory": NetquantRuntimeError,
    "internal": NetquantRuntimeError,
}


def error_class_for_code(code: str) -> type[NetquantError]:
    """The class raised for an engine error code (used by the extension module's exception translator)."""
    return _BY_CODE.get(code, NetquantRuntimeError)
