"""HTTP body handling for the chDB endpoint: chunked requests and HTTP compression.

clickhouse-connect streams inserts with `Transfer-Encoding: chunked`, compressing each Native
block as its own lz4/zstd frame (gzip as one stream), and asks for compressed responses with
`Accept-Encoding` plus `enable_http_compression=1`. These helpers undo and do exactly that.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from email.message import Message
from email.parser import BytesParser
from io import BufferedIOBase

import lz4.frame
from backports import zstd

from tests.support._chdb_http_errors import ClickHouseError


def read_chunked(rfile: BufferedIOBase) -> bytes:
    """Read a `Transfer-Encoding: chunked` body (trailers are read and dropped)."""
    parts: list[bytes] = []
    while True:
        size_line = rfile.readline(65537)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(rfile.read(size))
        rfile.readline(3)  # the CRLF after each chunk


def read_body(
    rfile: BufferedIOBase, transfer_encoding: str | None, content_length: str | None
) -> bytes:
    if transfer_encoding and "chunked" in transfer_encoding.lower():
        return read_chunked(rfile)
    return rfile.read(int(content_length)) if content_length else b""


def _lz4_frames(data: bytes) -> bytes:
    """All concatenated lz4 frames (clickhouse-connect sends one per Native block)."""
    out: list[bytes] = []
    rest = data
    while rest:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        out.append(decompressor.decompress(rest))
        if not decompressor.eof:
            raise ValueError("truncated lz4 frame")
        rest = decompressor.unused_data
    return b"".join(out)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": _lz4_frames,
    "zstd": zstd.decompress,
    "gzip": gzip.decompress,
    "x-gzip": gzip.decompress,
    "deflate": zlib.decompress,
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": lz4.frame.compress,
    "zstd": zstd.compress,
    "gzip": lambda data: gzip.compress(data, compresslevel=1),
    "deflate": zlib.compress,
}


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    decoder = _DECODERS.get(encoding)
    if decoder is None:
        raise ClickHouseError.of("BAD_ARGUMENTS", f"Unknown HTTP compression method {encoding!r}")
    try:
        return decoder(body)
    except Exception as exc:
        raise ClickHouseError.of(
            "CANNOT_DECOMPRESS", f"Cannot decompress {encoding} request body: {exc}"
        ) from exc


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The first method the client lists that we can produce (clickhouse-connect: lz4)."""
    for item in (accept_encoding or "").split(","):
        name = item.split(";", 1)[0].strip().lower()
        if name in _ENCODERS:
            return name
    return None


def encode_body(body: bytes, encoding: str) -> bytes:
    return _ENCODERS[encoding](body)


def form_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    """Fields of a multipart/form-data body (clickhouse-connect uses it for long parameters)."""
    message = BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, bytes] = {}
    for part in message.walk():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            raise ClickHouseError.of("NOT_IMPLEMENTED", "External data (form file parts)")
        if isinstance(name, str) and isinstance(part, Message):
            payload = part.get_payload(decode=True)
            fields[name] = payload if isinstance(payload, bytes) else b""
    return fields
