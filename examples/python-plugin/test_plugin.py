"""Unit tests of plugin.py on the host's CPython (3.11+), through the same generated
bindings the component uses. Run after build.sh (which writes ./bindings):

    .venv/bin/python -m unittest test_plugin -v
"""

import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bindings"))

from componentize_py_types import Err  # noqa: E402
from wit_world.exports import plugin as wit  # noqa: E402

import app  # noqa: E402
import plugin  # noqa: E402
from plugin import Sketch  # noqa: E402

FN = "iqr_over_time"


def go_quantile(q, values):
    """Prometheus' promql quantile(), transcribed: NaNs sort first."""
    if not values:
        return math.nan
    nans = [v for v in values if v != v]
    rest = sorted(v for v in values if v == v)
    ordered = nans + rest
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def reference_iqr(values):
    return go_quantile(0.75, values) - go_quantile(0.25, values)


def config(retention_ms=3_600_000, **options):
    return wit.SketchConfig(retention_ms=retention_ms, options=[(k, str(v)) for k, v in options.items()])


def same(a, b):
    return (a != a and b != b) or a == b


class IqrTest(unittest.TestCase):
    def error(self, fn, *args):
        with self.assertRaises(Err) as caught:
            fn(*args)
        return caught.exception.value

    def test_info(self):
        info = app.Plugin().info()
        self.assertEqual((info.name, info.version), ("iqr", "0.1.0"))
        (f,) = info.functions
        self.assertEqual((f.name, f.scalar_args), (FN, []))
        self.assertEqual((f.bound.relative, f.bound.min_samples), (0.0, 0))

    def test_matches_prometheus_quantiles(self):
        rng = random.Random(7)
        specials = [math.nan, math.inf, -math.inf, 0.0, -0.0]
        for trial in range(300):
            n = rng.randint(1, 60)
            values = [rng.choice([rng.gauss(0, 100), rng.randint(-3, 3), rng.choice(specials)])
                      if trial % 3 == 0 else rng.expovariate(0.1) for _ in range(n)]
            values = [float(v) for v in values]
            s = Sketch.create(config())
            s.insert([i * 1000 for i in range(n)], values)
            got = s.query(FN, [], 0, n * 1000)
            want = reference_iqr(values)
            self.assertTrue(same(got.value, want), (values, got.value, want))
            self.assertEqual((got.bound, got.samples), (0.0, n))

    def test_small_windows(self):
        s = Sketch.create(config())
        s.insert([1000], [5.0])
        self.assertEqual(s.query(FN, [], 0, 2000).value, 0.0)
        s.insert([2000, 3000, 4000], [1.0, 2.0, 10.0])
        # [5, 1, 2, 10]: q.25 = 1.75, q.75 = 6.25
        self.assertEqual(s.query(FN, [], 1000, 4000).value, 6.25 - 1.75)
        # An infinite lone value: inf*1 + inf*0 is NaN in Prometheus too.
        t = Sketch.create(config())
        t.insert([1], [math.inf])
        self.assertTrue(math.isnan(t.query(FN, [], 0, 1).value))

    def test_window_is_inclusive_and_none_when_empty(self):
        s = Sketch.create(config())
        s.insert([10, 20, 30, 40], [1.0, 2.0, 3.0, 4.0])
        self.assertEqual(s.query(FN, [], 20, 30).samples, 2)
        self.assertEqual(s.query(FN, [], 10, 10).samples, 1)
        self.assertIsNone(s.query(FN, [], 41, 100))
        self.assertIsNone(s.query(FN, [], 11, 19))

    def test_query_arguments(self):
        s = Sketch.create(config())
        self.assertIsInstance(self.error(s.query, "quantile_over_time", [], 0, 1), wit.Error_InvalidArgument)
        self.assertIsInstance(self.error(s.query, FN, [0.5], 0, 1), wit.Error_InvalidArgument)
        self.assertIsInstance(self.error(s.query, FN, [], 2, 1), wit.Error_InvalidArgument)
        self.assertIsNone(s.query(FN, [], 0, 1))

    def test_insert_checks(self):
        s = Sketch.create(config())
        s.insert([100, 200], [1.0, 2.0])
        err = self.error(s.insert, [300, 300], [1.0, 2.0])
        self.assertEqual(err, wit.Error_OutOfOrder(300))
        err = self.error(s.insert, [300, 400, 350], [1.0, 2.0, 3.0])
        self.assertEqual(err, wit.Error_OutOfOrder(350))
        err = self.error(s.insert, [200, 400], [1.0, 2.0])
        self.assertEqual(err, wit.Error_OutOfOrder(200))
        err = self.error(s.insert, [300, 400], [1.0])
        self.assertIsInstance(err, wit.Error_InvalidArgument)
        # Nothing of a refused batch was kept.
        self.assertEqual(s.coverage(), (100, 200))
        s.insert([], [])
        s.insert([201], [3.0])
        self.assertEqual(s.coverage(), (100, 201))

    def test_retention(self):
        s = Sketch.create(config(retention_ms=1000))
        self.assertIsNone(s.coverage())
        s.insert(list(range(0, 5000, 100)), [float(i) for i in range(50)])
        # Kept: timestamps >= 4900 - 1000.
        self.assertEqual(s.coverage(), (3900, 4900))
        self.assertEqual(s.query(FN, [], 0, 10_000).samples, 11)
        self.assertIsNone(s.query(FN, [], 0, 3899))
        # Many small inserts: compaction keeps answers right.
        for t in range(5000, 200_000, 100):
            s.insert([t], [float(t % 7)])
        self.assertEqual(s.coverage(), (198_900, 199_900))
        window = [float(t % 7) for t in range(198_900, 200_000, 100)]
        self.assertTrue(same(s.query(FN, [], 0, 10**9).value, reference_iqr(window)))

    def test_query_range_matches_instant_queries(self):
        rng = random.Random(3)
        ts = sorted(rng.sample(range(0, 600_000), 700))
        vs = [rng.choice([rng.gauss(10, 3), math.nan]) if rng.random() < 0.05 else rng.gauss(10, 3) for _ in ts]
        s = Sketch.create(config())
        s.insert(ts, vs)
        for start, end, step, window in [(-60_000, 700_000, 15_000, 60_000), (0, 600_000, 1000, 300_000),
                                         (5, 5, 1, 0), (100_000, 400_000, 7000, 0), (0, 600_000, 100_000, 1)]:
            r = wit.RangeRequest(start_ms=start, end_ms=end, step_ms=step, window_ms=window)
            answers = s.query_range(FN, [], r)
            times = list(range(start, end + 1, step))
            self.assertEqual(len(answers), len(times))
            for t, a in zip(times, answers):
                one = s.query(FN, [], t - window, t)
                if one is None:
                    self.assertIsNone(a)
                else:
                    self.assertEqual(a.samples, one.samples)
                    self.assertTrue(same(a.value, one.value), (t, a, one))

    def test_query_range_arguments(self):
        s = Sketch.create(config())
        bad = [(0, 10, 0, 5), (0, 10, -1, 5), (0, 10, 1, -1), (10, 0, 1, 5), (0, 10**9, 1, 5)]
        for start, end, step, window in bad:
            r = wit.RangeRequest(start_ms=start, end_ms=end, step_ms=step, window_ms=window)
            self.assertIsInstance(self.error(s.query_range, FN, [], r), wit.Error_InvalidArgument)
        r = wit.RangeRequest(start_ms=0, end_ms=10, step_ms=5, window_ms=5)
        self.assertIsInstance(self.error(s.query_range, "x_over_time", [], r), wit.Error_InvalidArgument)
        self.assertIsInstance(self.error(s.query_range, FN, [1.0], r), wit.Error_InvalidArgument)
        self.assertEqual(s.query_range(FN, [], r), [None, None, None])

    def test_options(self):
        self.assertIsInstance(self.error(Sketch.create, config(0)), wit.Error_InvalidConfig)
        self.assertIsInstance(self.error(Sketch.create, config(-5)), wit.Error_InvalidConfig)
        err = self.error(Sketch.create, config(alpha=0.1))
        self.assertIsInstance(err, wit.Error_InvalidConfig)
        self.assertIn("alpha", err.value)
        self.assertIsInstance(self.error(Sketch.create, config(trap_on_value="x")), wit.Error_InvalidConfig)
        twice = wit.SketchConfig(retention_ms=1, options=[("trap_on_value", "1"), ("trap_on_value", "2")])
        self.assertIsInstance(self.error(Sketch.create, twice), wit.Error_InvalidConfig)

    def test_trap_on_value(self):
        s = Sketch.create(config(trap_on_value=42))
        s.insert([1, 2], [41.0, 43.0])
        with self.assertRaises(RuntimeError) as caught:
            s.insert([3, 4], [1.0, 42.0])
        self.assertNotIsInstance(caught.exception, Err)
        n = Sketch.create(config(trap_on_value="nan"))
        n.insert([1], [1.0])
        with self.assertRaises(RuntimeError):
            n.insert([2], [math.nan])
        # A refused batch is refused before the hook looks at it.
        self.assertEqual(self.error(s.insert, [0], [42.0]), wit.Error_OutOfOrder(0))

    def test_snapshot_round_trip(self):
        s = Sketch.create(config(retention_ms=50_000))
        s.insert(list(range(0, 100_000, 250)), [math.sin(i) * 10 for i in range(400)])
        s.insert([100_000], [math.nan])
        snap = s.snapshot()
        self.assertIsInstance(snap, bytes)
        r = Sketch.restore(config(retention_ms=50_000), snap)
        self.assertEqual(r.coverage(), s.coverage())
        self.assertEqual(r.snapshot(), snap)
        for t0, t1 in [(0, 10**6), (60_000, 80_000), (99_000, 100_000)]:
            a, b = s.query(FN, [], t0, t1), r.query(FN, [], t0, t1)
            self.assertEqual(a.samples, b.samples)
            self.assertTrue(same(a.value, b.value))
        # A shorter retention at restore applies at once.
        short = Sketch.restore(config(retention_ms=1000), snap)
        self.assertEqual(short.coverage(), (99_000, 100_000))
        # Empty sketches round-trip too.
        empty = Sketch.restore(config(), Sketch.create(config()).snapshot())
        self.assertIsNone(empty.coverage())

    def test_bad_snapshots(self):
        s = Sketch.create(config())
        s.insert([1, 2, 3], [1.0, 2.0, 3.0])
        snap = s.snapshot()
        corrupt = bytearray(snap)
        corrupt[20] ^= 1
        future = bytearray(snap)
        future[5] = 2
        body = plugin._HEADER.pack(b"IQRPY", 1, 2) + plugin.array("q", [2, 1]).tobytes() + bytes(16)
        unordered = body + plugin._TRAILER.pack(plugin.binascii.crc32(body))
        cases = {
            "empty": b"",
            "other plugin": b"SPSKv002" + bytes(40),
            "version": bytes(future),
            "truncated": snap[:-1],
            "longer": snap + b"\0",
            "corrupt": bytes(corrupt),
            "unordered": unordered,
        }
        for name, data in cases.items():
            err = self.error(Sketch.restore, config(), data)
            self.assertIsInstance(err, wit.Error_BadSnapshot, name)
        self.assertIn("version 2", self.error(Sketch.restore, config(), bytes(future)).value)
        # Bad config wins as in create.
        self.assertIsInstance(self.error(Sketch.restore, config(0), snap), wit.Error_InvalidConfig)

    def test_memory_bytes_grows_with_samples(self):
        s = Sketch.create(config())
        empty = s.memory_bytes()
        s.insert(list(range(10_000)), [1.0] * 10_000)
        self.assertGreaterEqual(s.memory_bytes() - empty, 16 * 10_000)


if __name__ == "__main__":
    unittest.main()
