"""Manifest bodies as the metastore stores them (src/store/body_pack.c): a stored form that
starts with a NUL byte is packed, the next byte saying how (0: the body follows as it is,
1: raw deflate with the store's dictionary_v1); any other form is the body itself. The
dictionary is read from the C source, so the two cannot drift apart."""
import os
import re
import zlib

_SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "src", "store", "body_pack.c")


def _dictionary():
    with open(_SOURCE, encoding="utf-8") as f:
        text = f.read()
    block = text[text.index("dictionary_v1[] ="):]
    block = block[:block.index(";")]
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', block)
    return "".join(parts).encode().decode("unicode_escape").encode()


DICTIONARY_V1 = _dictionary()


def unpack(stored):
    """The body of a stored form."""
    stored = bytes(stored)
    if not stored or stored[0] != 0:
        return stored
    if stored[1] == 0:
        return stored[2:]
    assert stored[1] == 1, "unknown stored form %d" % stored[1]
    d = zlib.decompressobj(wbits=-15, zdict=DICTIONARY_V1)
    return d.decompress(stored[2:]) + d.flush()


def pack(body):
    """The stored form the store writes for body (zlib's output is the same for the same
    input, level and dictionary)."""
    if not body:
        return body
    c = zlib.compressobj(-1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1)
    packed = c.compress(body) + c.flush()
    if len(packed) + 2 < len(body):
        return b"\0\1" + packed
    return b"\0\0" + body if body[0] == 0 else body
