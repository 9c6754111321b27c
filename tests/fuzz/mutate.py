"""A small, deterministic mutation engine for the fuzz suite: seeds in, hostile variants out.

Every variant comes from `random.Random(seed)`, so a failure names a seed that reproduces it.
The budget is time AND count: each target runs until `AWF_FUZZ_SECONDS` (default 3) have passed
or MAX_INPUTS inputs were tried, whichever comes first, so every loop ends by itself.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator, Sequence

MAX_INPUTS = 50_000_000  # a bound on count too; the time budget ends every run first
# bytes that matter to HTTP, TLS and DNS framing
INTERESTING = (b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b";", b",", b"\x00", b"\x80", b"\xff",
               b"0", b"9", b"a", b"f", b"z", b"-", b"=", b"\"", b"%", b"/", b"[", b"]", b"@",
               b"\x16\x03\x01", b"chunked", b"Content-Length: ", b"Transfer-Encoding: ",
               b"ffffffffffffffff", b"\r\n\r\n", b"0\r\n\r\n")


def seconds() -> float:
    return float(os.environ.get("AWF_FUZZ_SECONDS", "3"))


def mutate(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        at = rng.randint(0, len(out))
        if op == 0 and out:  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert something that matters to a parser
            out[at:at] = rng.choice(INTERESTING)
        elif op == 2 and out:  # delete a run
            del out[at:at + rng.randint(1, 8)]
        elif op == 3 and out:  # replace a byte with a random one
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op == 4:  # duplicate a line
            lines = bytes(out).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            out = bytearray(b"\r\n".join(lines))
        elif op == 5:  # splice another seed's tail
            other = rng.choice(seeds)
            out[at:] = other[rng.randint(0, len(other)):]
        elif op == 6:  # truncate
            del out[at:]
        else:  # repeat a run (long tokens, many headers)
            end = min(len(out), at + rng.randint(1, 16))
            out[at:at] = bytes(out[at:end]) * rng.randint(2, 64)
    return bytes(out)


def inputs(seeds: Sequence[bytes], *, name: str, budget: float | None = None) -> Iterator[bytes]:
    """Seeds first, then mutants, until the time budget or MAX_INPUTS is reached."""
    deadline = time.monotonic() + (seconds() if budget is None else budget)
    rng = random.Random(f"{name}:{os.environ.get('AWF_FUZZ_SEED', '0')}")
    yield from seeds
    for _ in range(MAX_INPUTS):
        if time.monotonic() >= deadline:
            return
        yield mutate(rng.choice(seeds), rng, seeds)


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` cut at random places (byte by byte now and then)."""
    if rng.random() < 0.2:
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
