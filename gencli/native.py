"""Loading scipy and scikit-learn (and their OpenBLAS) safely under an address-space limit.

Under ``ulimit -v`` OpenBLAS can spin for ever: when it cannot allocate its 32 MB work
buffer while loading, its allocator retries in a loop, inside ``dlopen``, with Python's
GIL held, so the run neither ends nor answers SIGTERM (``fit --model kde --bandwidth cv``
under ``ulimit -v 600000`` did exactly that, loading scipy.linalg). Two defences:

- Under such a limit gencli spends address space sparingly, set before numpy and Arrow
  load: OpenBLAS starts one thread (each extra one costs a buffer, a stack and a malloc
  arena, 40 MB; gencli limits BLAS to one thread while it fits anyway), Arrow allocates
  with malloc instead of reserving 1.2 GB for mimalloc, and malloc keeps two arenas.
  With these, gencli's own imports and a small fit take about 520 MB of address space
  instead of 1.6 GB.
- Before scipy or scikit-learn is first imported, the room left under the limit is
  checked against what loading them takes (measured: 265 MB from numpy alone to every
  module a fit uses), and a one-line ResourceError says which limit was hit instead.
- Work that calls BLAS runs on one thread (:func:`max_threads`): OpenBLAS spins the same
  way when a second simultaneous caller cannot get its own buffer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from gencli.errors import ResourceError

BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
_OUT_OF_ROOM_SIGNS = ("failed to map segment", "annot allocate memory", "cannot be imported")
# Address space that loading them takes under a limit (with the settings below), measured
# from a fit's first import to its last: 190-206 MB with scikit-learn, 93 MB for
# scipy.spatial alone; with room for one more 32 MB BLAS buffer.
LOAD_ROOM = {"sklearn": 256 << 20, "scipy": 160 << 20}


def address_space_limited() -> bool:
    """True when this process runs under an address-space limit (``ulimit -v``)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return False
    return soft != resource.RLIM_INFINITY


def one_blas_thread_under_address_limit() -> bool:
    """Spend little address space under ``ulimit -v`` (call before numpy is imported).

    One OpenBLAS thread; Arrow's system allocator rather than mimalloc, which reserves
    1.2 GB of address space at the first CSV read; at most two malloc arenas, each of
    which reserves 64 MB (Arrow's reader starts a thread per core). Settings the user made
    are left alone. Returns True when this process is under such a limit.
    """
    if not address_space_limited():
        return False
    os.environ.setdefault(BLAS_THREADS_VARIABLE, "1")
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")
    if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        try:
            import ctypes

            ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
        except (OSError, AttributeError):  # no C library with mallopt: nothing to set
            pass
    return True


def max_threads(wanted: int) -> int:
    """Threads gencli may run BLAS work on: ``wanted``, or 1 under ``ulimit -v``.

    OpenBLAS gives each caller running at the same moment its own 32 MB buffer, allocated
    on first need; when that allocation fails it retries for ever, holding the GIL (a GMM
    search froze that way on its second thread under ``ulimit -v 600000``). One thread
    reuses the buffer allocated while loading, so under a limit work runs on one.
    """
    return 1 if wanted > 1 and address_space_limited() else wanted


def _room() -> int | None:
    from gencli.limits import _address_space_available

    return _address_space_available()


def load(modules: Iterable[str], purpose: str) -> None:
    """Import ``modules`` (scipy or scikit-learn ones), first refusing with a ResourceError
    if the address-space limit leaves too little room to load them.

    ``purpose`` says what they are for ("fitting a kernel density").
    """
    wanted = [m for m in modules if m not in sys.modules]
    need = _load_room(wanted)
    room = _room() if need else None
    if room is not None and room < need:
        raise _out_of_room(purpose, need, room)
    for module in wanted:
        try:
            importlib.import_module(module)
        except MemoryError:
            raise _out_of_room(purpose, need, _room()) from None
        except ImportError as exc:
            # A shared library that cannot be mapped surfaces as an ImportError (scipy
            # rewords it: "extension modules cannot be imported").
            if room is not None and any(sign in str(exc) for sign in _OUT_OF_ROOM_SIGNS):
                raise _out_of_room(purpose, need, _room()) from None
            raise


def _load_room(modules: list[str]) -> int:
    """Address space that importing ``modules`` may take (0: nothing heavy left to load)."""
    roots = {m.split(".")[0] for m in modules}
    return max((LOAD_ROOM[r] for r in roots if r in LOAD_ROOM and r not in sys.modules), default=0)


def _out_of_room(purpose: str, need: int, room: int | None) -> ResourceError:
    from gencli.limits import format_size

    left = f"leaves {format_size(room)}" if room is not None else "leaves too little"
    return ResourceError(
        f"ran out of memory while loading scipy and scikit-learn for {purpose}: they need "
        f"about {format_size(need)} of address space and the address-space limit "
        f"(ulimit -v) {left}; raise the limit (ulimit -v 2000000, say) or lift it"
    )


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system at once.

    numpy's temporaries of more than 128 KiB are otherwise mapped afresh and unmapped on
    every allocation, and in a virtual machine each page first touched costs a fault on
    the host too: the 2-D ``--approx`` evaluation took 43 ms cold against 16 ms with this
    (measured). The heap keeps up to 64 MiB free at its top instead of trimming it; the
    benchmarks' peak memory for fit, score and sample stayed within their run-to-run
    spread. False where this is not Linux with a C library that has mallopt (nothing is
    changed then), or where the library refuses a setting (the others still apply).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        wide = ctypes.sizeof(ctypes.c_void_p) >= 8
    except Exception:  # no C library to load, or one without mallopt
        return False
    settings = (
        # glibc's largest mmap threshold: 32 MiB on 64-bit systems, 512 KiB on 32-bit ones.
        (_M_MMAP_THRESHOLD, 32 << 20 if wide else 512 << 10),
        (_M_TRIM_THRESHOLD, 64 << 20),
        (_M_TOP_PAD, 16 << 20),
    )
    return all([mallopt(option, value) == 1 for option, value in settings])
