"""Runs one fuzz harness: ``python -m fuzz.runner <name> [libFuzzer flags]``.

A harness is a module ``fuzz/<name>.py`` with ``check(data: bytes) -> None``: it feeds
``data`` to a parser and asserts the parser's contract. Anything ``check`` raises is a
crash (an AssertionError for a broken property, any other exception for one the parser
lets escape). ``data`` is the bytes a client would send, so a seed in
``fuzz/corpus/<name>/`` is a real request as it appears on the wire.

Modes:

``python -m fuzz.runner NAME [-max_total_time=S] [-runs=N] ...``
    atheris (libFuzzer) with coverage of ``aiotcp``: new inputs go to
    ``.fuzz-work/corpus/NAME/``, a crash input to ``.fuzz-work/crashes/NAME-crash-*``
    (both gitignored), read with the seeds of ``fuzz/corpus/NAME/``.
``python -m fuzz.runner NAME --seeds``
    ``check`` over every seed, without atheris (for a Python atheris has no wheel for).

Also here, what several harnesses assert: the same frames for any chunking of the input.
"""

from __future__ import annotations

import importlib
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
WORK = ROOT / ".fuzz-work"
# The modules of fuzz/ that are not harnesses.
SUPPORT = ("__init__", "runner")
# libFuzzer's default -max_len is 4096; a few parsers' limits (a 4,300-digit integer,
# a v2 PROXY header of 64 KiB) are only reached past it.
MAX_LEN = 16384


def harnesses() -> list[str]:
    """The names of the harness modules in fuzz/."""
    return sorted(p.stem for p in (ROOT / "fuzz").glob("*.py") if p.stem not in SUPPORT)


# ---- chunkings: every parser fed whole must agree with it fed in pieces --------------


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    """``data`` whole, byte by byte, and cut at places drawn from its own checksum (the
    same input always cut the same way, so a crash replays)."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    seed = zlib.crc32(data) | 1
    cuts, pos = [], 0
    while pos < len(data):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        step = 1 + seed % 17
        cuts.append(data[pos : pos + step])
        pos += step
    yield cuts


Outcome = tuple[list[Any], str | None]


def feed_all(codec: Any, chunks: list[bytes],
             after: Callable[[Any], None] | None = None) -> Outcome:
    """Feed ``chunks`` in order: (every frame delivered, the error code or None). A
    ProtocolError ends the stream; its ``messages`` count as delivered, as the server
    answers them. ``after(codec)`` runs after each feed that returned."""
    from aiotcp.codecs.contract import ProtocolError

    frames: list[Any] = []
    for chunk in chunks:
        try:
            got = codec.feed(chunk)
        except ProtocolError as e:
            return frames + list(e.messages), e.code
        frames.extend(got)
        if after is not None:
            after(codec)
    return frames, None


def same_for_every_chunking(make: Callable[[], Any], data: bytes,
                            after: Callable[[Any], None] | None = None) -> Outcome:
    """The outcome of ``data`` fed whole, asserted equal for every other chunking."""
    whole: Outcome | None = None
    for chunks in chunkings(data):
        got = feed_all(make(), chunks, after)
        if whole is None:
            whole = got
        else:
            assert got == whole, f"fed in {len(chunks)} pieces: {got!r}\nwhole: {whole!r}"
    assert whole is not None
    return whole


def pure(module: str) -> Any:
    """The pure-Python ``module`` (``aiotcp.codecs.line``), not the compiled twin the
    package names when it is built: atheris sees Python code only."""
    return importlib.import_module(module)


def compiled_twin(module: str) -> Any:
    """The compiled twin of ``module`` (``aiotcp.codecs.line``) if it is built and in use,
    else None. The harnesses fuzz the pure module (atheris sees Python code only) and
    hold the twin to the same outcome."""
    from aiotcp._speedups import COMPILED, twin

    return importlib.import_module(twin(module)) if COMPILED else None


# ---- running ----------------------------------------------------------------------


def _seeds(name: str) -> list[Path]:
    return sorted(p for p in (CORPUS / name).iterdir() if p.is_file())


def run_seeds(name: str, check: Callable[[bytes], None]) -> int:
    """``check`` over every seed of ``name``; 1 (printing the input) on the first failure."""
    seeds = _seeds(name)
    if not seeds:
        print(f"fuzz {name}: no seeds in {CORPUS / name}", file=sys.stderr)
        return 1
    for path in seeds:
        data = path.read_bytes()
        try:
            check(data)
        except Exception:  # noqa: BLE001 (whatever check raises is the crash reported)
            import traceback

            traceback.print_exc()
            print(f"fuzz {name}: crash on seed {path.name}: {data!r}", file=sys.stderr)
            return 1
    print(f"fuzz {name}: {len(seeds)} seeds pass")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in harnesses():
        print(f"usage: python -m fuzz.runner {{{','.join(harnesses())}}} [--seeds | "
              "libFuzzer flags]", file=sys.stderr)
        return 2
    name, flags = argv[1], argv[2:]
    if flags == ["--seeds"]:
        return run_seeds(name, importlib.import_module(f"fuzz.{name}").check)
    import atheris

    with atheris.instrument_imports(include=["aiotcp"]):
        harness = importlib.import_module(f"fuzz.{name}")
    work = WORK / "corpus" / name
    work.mkdir(parents=True, exist_ok=True)
    (WORK / "crashes").mkdir(parents=True, exist_ok=True)
    args = [argv[0], f"-artifact_prefix={WORK / 'crashes' / name}-", f"-max_len={MAX_LEN}",
            *flags, str(work), str(CORPUS / name)]
    atheris.Setup(args, harness.check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
