"""The `sketch` resource of wit/sketch.wit for the `iqr` plugin.

componentize-py looks for the implementation of each exported resource in a module named
after its interface: the `plugin` interface's `sketch` resource is the class `Sketch`
here. `app.py` implements the interface's free function `info`.

A sketch keeps the raw samples within `retention-ms` of the newest one, so every answer
is exact (Prometheus' own arithmetic on the same samples). Memory is 16 bytes per
retained sample (two `array`s), plus what `array` over-allocates.
"""

import binascii
import math
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right, insort
from operator import lt

from componentize_py_types import Err
from wit_world.exports import plugin as wit

FUNCTION = "iqr_over_time"
# As sketch-plugin-sdk: most evaluation times one query-range answers.
MAX_RANGE_STEPS = 1_000_000

# Snapshot: header (magic, format version, sample count), the timestamps as int64 and
# the values as float64 (both little-endian), and a CRC-32 of everything before it.
SNAPSHOT_MAGIC = b"IQRPY"
SNAPSHOT_VERSION = 1
_HEADER = struct.Struct("<5sBQ")
_TRAILER = struct.Struct("<I")
_BIG_ENDIAN = sys.byteorder == "big"

# A query-range's window is moved sample by sample (about 1 us per sample in wasm)
# while fewer than 1/_SLIDE_FRACTION of its samples enter or leave at a step; otherwise
# it is sorted afresh (about 0.25 us per sample).
_SLIDE_FRACTION = 4


def _invalid_config(text: str) -> Err:
    return Err(wit.Error_InvalidConfig(text))


def _invalid_argument(text: str) -> Err:
    return Err(wit.Error_InvalidArgument(text))


def _bad_snapshot(text: str) -> Err:
    return Err(wit.Error_BadSnapshot(text))


def _configure(config: wit.SketchConfig):
    """(retention in ms, trap_on_value or None); raises invalid-config."""
    if config.retention_ms <= 0:
        raise _invalid_config(f"retention-ms must be positive, got {config.retention_ms}")
    trap = None
    seen = set()
    for key, value in config.options:
        if key in seen:
            raise _invalid_config(f"option {key!r} given twice")
        seen.add(key)
        if key == "trap_on_value":
            try:
                trap = float(value)
            except ValueError:
                raise _invalid_config(f"option trap_on_value: {value!r} is not a number") from None
        else:
            raise _invalid_config(
                f"unknown option {key!r}; iqr takes only trap_on_value (a test hook)"
            )
    return config.retention_ms, trap


def _check_call(function: str, args) -> None:
    if function != FUNCTION:
        raise _invalid_argument(f"plugin iqr does not serve {function}")
    if len(args) != 0:
        raise _invalid_argument(f"{FUNCTION} takes 0 scalar argument(s), got {len(args)}")


def _increasing(ts) -> bool:
    """Whether `ts` strictly increases (C-speed loop)."""
    return all(map(lt, ts, ts[1:]))


def _split(chunk):
    """(number of NaNs, the other values sorted ascending), Prometheus' order being
    every NaN first, then by value."""
    total = sum(chunk)
    if total == total:  # no NaN (nor both infinities): sort as is
        return 0, sorted(chunk)
    kept = [v for v in chunk if v == v]
    kept.sort()
    return len(chunk) - len(kept), kept


def _quantile(phi: float, nans: int, ordered: list) -> float:
    """Prometheus' quantile (promql/quantile.go) of `nans` NaNs followed by `ordered`:
    rank = phi·(n-1), linear interpolation between the two neighbouring samples."""
    n = nans + len(ordered)
    rank = phi * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    lo, hi = int(lower), int(upper)
    lo_value = math.nan if lo < nans else ordered[lo - nans]
    hi_value = math.nan if hi < nans else ordered[hi - nans]
    return lo_value * (1 - weight) + hi_value * weight


def _iqr(nans: int, ordered: list) -> float:
    """quantile_over_time(0.75, ...) - quantile_over_time(0.25, ...), as PromQL computes it."""
    return _quantile(0.75, nans, ordered) - _quantile(0.25, nans, ordered)


class _SlidingWindow:
    """The sorted values of samples [h0, h1), moved along a query-range's steps."""

    def __init__(self, values: array):
        self.values = values
        self.h0 = self.h1 = 0
        self.nans = 0
        self.ordered: list = []

    def move(self, i0: int, i1: int) -> None:
        changes = (i0 - self.h0) + (i1 - self.h1)
        backwards = i0 < self.h0 or i1 < self.h1
        if backwards or i0 >= self.h1 or changes * _SLIDE_FRACTION > i1 - i0:
            self.nans, self.ordered = _split(self.values[i0:i1])
        else:
            ordered = self.ordered
            for v in self.values[self.h0:i0]:
                if v != v:
                    self.nans -= 1
                else:
                    del ordered[bisect_left(ordered, v)]
            for v in self.values[self.h1:i1]:
                if v != v:
                    self.nans += 1
                else:
                    insort(ordered, v)
        self.h0, self.h1 = i0, i1


class Sketch(wit.Sketch):
    """One series' samples within the retention, oldest first."""

    def __init__(self, retention_ms: int, trap_on_value):
        self._retention = retention_ms
        self._trap = trap_on_value
        self._ts = array("q")
        self._vs = array("d")
        # Samples before index _lo have expired; they are cut off in bulk (compaction)
        # so that a one-sample insert does not move the whole array.
        self._lo = 0

    # === WIT methods ===

    @classmethod
    def create(cls, config: wit.SketchConfig) -> "Sketch":
        retention, trap = _configure(config)
        return cls(retention, trap)

    @classmethod
    def restore(cls, config: wit.SketchConfig, snapshot: bytes) -> "Sketch":
        retention, trap = _configure(config)
        data = bytes(snapshot)
        if len(data) < _HEADER.size + _TRAILER.size:
            raise _bad_snapshot(f"{len(data)} bytes is too short for an iqr snapshot")
        magic, version, count = _HEADER.unpack_from(data)
        if magic != SNAPSHOT_MAGIC:
            raise _bad_snapshot(f"not an iqr snapshot (magic {magic!r})")
        if version != SNAPSHOT_VERSION:
            raise _bad_snapshot(
                f"iqr snapshot format version {version}; this plugin reads version {SNAPSHOT_VERSION}"
            )
        size = _HEADER.size + 16 * count + _TRAILER.size
        if len(data) != size:
            raise _bad_snapshot(f"iqr snapshot of {count} samples has {len(data)} bytes, expected {size}")
        (checksum,) = _TRAILER.unpack_from(data, size - _TRAILER.size)
        if binascii.crc32(memoryview(data)[: size - _TRAILER.size]) != checksum:
            raise _bad_snapshot("iqr snapshot checksum mismatch (corrupted)")
        middle = _HEADER.size + 8 * count
        ts, vs = array("q"), array("d")
        ts.frombytes(data[_HEADER.size:middle])
        vs.frombytes(data[middle: size - _TRAILER.size])
        if _BIG_ENDIAN:
            ts.byteswap()
            vs.byteswap()
        if not _increasing(ts):
            raise _bad_snapshot("iqr snapshot timestamps do not strictly increase")
        sketch = cls(retention, trap)
        sketch._ts, sketch._vs = ts, vs
        sketch._expire()
        return sketch

    def insert(self, timestamps, values) -> None:
        n = len(timestamps)
        if n != len(values):
            raise _invalid_argument(f"{n} timestamps but {len(values)} values")
        if n == 0:
            return
        newest = self._ts[-1] if len(self._ts) > self._lo else None
        if (newest is not None and timestamps[0] <= newest) or not _increasing(timestamps):
            last = newest
            for t in timestamps:
                if last is not None and t <= last:
                    raise Err(wit.Error_OutOfOrder(t))
                last = t
        if self._trap is not None:
            trap = self._trap
            hit = any(v != v for v in values) if trap != trap else trap in values
            if hit:
                # The test hook: an uncaught exception, which componentize-py turns into
                # a trap (the host then quarantines the plugin).
                raise RuntimeError(f"iqr: trap_on_value {trap!r} inserted (test hook)")
        self._ts.extend(timestamps)
        self._vs.extend(values)
        self._expire()

    def query(self, function: str, args, t0: int, t1: int):
        _check_call(function, args)
        if t0 > t1:
            raise _invalid_argument(f"t0 {t0} is after t1 {t1}")
        i0, i1 = self._range(t0, t1)
        if i1 == i0:
            return None
        nans, ordered = _split(self._vs[i0:i1])
        return wit.Estimate(value=_iqr(nans, ordered), bound=0.0, samples=i1 - i0)

    def query_range(self, function: str, args, range: wit.RangeRequest):
        _check_call(function, args)
        start, end, step, window = range.start_ms, range.end_ms, range.step_ms, range.window_ms
        if step <= 0 or window < 0 or start > end or (end - start) // step + 1 > MAX_RANGE_STEPS:
            raise _invalid_argument(
                f"bad range: start {start} end {end} step {step} window {window} "
                f"(at most {MAX_RANGE_STEPS} steps)"
            )
        out = []
        slide = _SlidingWindow(self._vs)
        estimate = wit.Estimate
        t = start
        while t <= end:
            i0, i1 = self._range(t - window, t)
            if i1 == i0:
                out.append(None)
            else:
                slide.move(i0, i1)
                out.append(estimate(value=_iqr(slide.nans, slide.ordered), bound=0.0, samples=i1 - i0))
            t += step
        return out

    def coverage(self):
        if len(self._ts) <= self._lo:
            return None
        return (self._ts[self._lo], self._ts[-1])

    def memory_bytes(self) -> int:
        # The arrays with their spare capacity, and the object itself.
        return sys.getsizeof(self._ts) + sys.getsizeof(self._vs) + sys.getsizeof(self) + 64

    def snapshot(self) -> bytes:
        ts, vs = self._ts[self._lo:], self._vs[self._lo:]
        if _BIG_ENDIAN:
            ts.byteswap()
            vs.byteswap()
        body = _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(ts)) + ts.tobytes() + vs.tobytes()
        return body + _TRAILER.pack(binascii.crc32(body))

    # === internals ===

    def _range(self, t0: int, t1: int):
        """Indices [i0, i1) of the retained samples with timestamps in [t0, t1]."""
        i0 = bisect_left(self._ts, t0, self._lo)
        i1 = bisect_right(self._ts, t1, self._lo)
        return i0, max(i0, i1)

    def _expire(self) -> None:
        """Forgets samples older than newest - retention."""
        if len(self._ts) <= self._lo:
            return
        cutoff = self._ts[-1] - self._retention
        self._lo = bisect_left(self._ts, cutoff, self._lo)
        if self._lo >= 1024 and 2 * self._lo >= len(self._ts):
            del self._ts[: self._lo]
            del self._vs[: self._lo]
            self._lo = 0
