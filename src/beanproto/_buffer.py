"""The receive buffer: one ``bytearray``, linear in the bytes that pass.

Data lives in ``_data[_start:_end]``. Consuming moves ``_start`` forward;
when everything is consumed both indices go back to zero, so the common case
(one reply per read) never moves a byte. When the tail runs out of room the
live bytes are moved to the front or the array is replaced by one twice as
large, which keeps the total work linear in the bytes received.

The free tail can be lent out as a ``memoryview`` (:meth:`writable`) so that a
socket reads straight into it, and :meth:`reserve` can make room for a whole
body in advance, so that a large body arrives in one piece without being
copied on the way in. The array is never resized in place (it is replaced),
so a view lent out earlier can never block a resize.
"""

from __future__ import annotations

from .errors import ArgumentError, RemoteProtocolError

__all__ = ["ReceiveBuffer"]

#: Bytes a read asks for when nothing better is known.
READ_SIZE = 65536

#: A buffer grown past this is given back once it is empty.
_SHRINK_ABOVE = 4 * 1024 * 1024


class ReceiveBuffer:
    """Bytes received and not yet consumed."""

    __slots__ = ("_data", "_end", "_scanned", "_start", "_view")

    def __init__(self, capacity: int = READ_SIZE) -> None:
        self._data = bytearray(capacity)
        self._view = memoryview(self._data)
        self._start = 0
        self._end = 0
        #: Where the last search for CRLF stopped (absolute index).
        self._scanned = 0

    def __len__(self) -> int:
        return self._end - self._start

    def reserve(self, nbytes: int) -> None:
        """Make room for at least ``nbytes`` more bytes after the data."""
        data = self._data
        if len(data) - self._end >= nbytes:
            return
        start, end = self._start, self._end
        used = end - start
        if used + nbytes <= len(data) and used <= len(data) // 2:
            data[0:used] = data[start:end]
        else:
            # READ_SIZE to spare: a body read into place after its reply line
            # then fits again next time, line included, without a move.
            bigger = bytearray(max(2 * len(data), used + nbytes + READ_SIZE))
            bigger[0:used] = self._view[start:end]
            self._data = bigger
            self._view = memoryview(bigger)
        self._scanned -= start
        self._start, self._end = 0, used

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append a copy of ``data``."""
        n = len(data)
        if len(self._data) - self._end < n:
            self.reserve(n)
        end = self._end
        self._data[end : end + n] = data
        self._end = end + n

    def writable(self, nbytes: int) -> memoryview:
        """Lend the free tail, at least ``nbytes`` long, to be read into."""
        if len(self._data) - self._end < nbytes:
            self.reserve(nbytes)
        return self._view[self._end :]

    def commit(self, nbytes: int) -> None:
        """Count ``nbytes`` written into the view from :meth:`writable`."""
        if nbytes < 0 or self._end + nbytes > len(self._data):
            raise ArgumentError(
                f"buffer_updated({nbytes}): only {len(self._data) - self._end} bytes were lent"
            )
        self._end += nbytes

    def take_line(self) -> bytes | None:
        """Consume the first line and return it without its CRLF, or return
        ``None`` if no complete line is buffered yet.

        A failed search remembers where it stopped, so bytes arriving one at a
        time are each scanned once.
        """
        start = self._start
        end = self._end
        i = self._data.find(b"\r\n", self._scanned if self._scanned > start else start, end)
        if i < 0:
            self._scanned = end - 1
            return None
        line = self._view[start:i].tobytes()
        if i + 2 == end:
            self._start = self._end = self._scanned = 0
        else:
            self._start = i + 2
        return line

    def take_body(self, size: int) -> bytes | None:
        """Consume ``size`` bytes and the CRLF after them and return the
        bytes, or return ``None`` if they are not all buffered yet.

        Raises:
            RemoteProtocolError: the body is not followed by CRLF.
        """
        start = self._start
        end = start + size
        if end + 2 > self._end:
            return None
        data = self._data
        if data[end] != 13 or data[end + 1] != 10:
            raise RemoteProtocolError(f"body of {size} bytes is not followed by CRLF")
        out = self._view[start:end].tobytes()
        self.skip(size + 2)
        return out

    def head(self, nbytes: int) -> bytes:
        """The first ``nbytes`` bytes (or fewer), not consumed; for messages."""
        return bytes(self._data[self._start : min(self._start + nbytes, self._end)])

    def skip(self, nbytes: int) -> None:
        """Consume ``nbytes`` bytes."""
        start = self._start + nbytes
        if start >= self._end:
            self._start = self._end = self._scanned = 0
            if len(self._data) > _SHRINK_ABOVE:
                self._data = bytearray(READ_SIZE)
                self._view = memoryview(self._data)
        else:
            self._start = start
