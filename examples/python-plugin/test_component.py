"""Tests of the built component, iqr.wasm, through the WebAssembly boundary with
wasmtime-py (no proxy): WIT errors come back as variants, options reach `create`, and
the trap_on_value hook traps. Needs `.venv/bin/pip install wasmtime==50.0.1`; compiling
the component takes about 10 s.

    .venv/bin/python -m unittest test_component -v
"""

import os
import unittest
from types import SimpleNamespace

try:
    import wasmtime
    from wasmtime import component as cm
except ImportError:  # pragma: no cover
    wasmtime = None

WASM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "iqr.wasm")
INTERFACE = "sketch-proxy:sketch/plugin@0.1.0"
FN = "iqr_over_time"


def record(**fields):
    """A WIT record for wasmtime-py: attribute names as in the WIT (kebab-case)."""
    r = SimpleNamespace()
    for k, v in fields.items():
        setattr(r, k.replace("_", "-"), v)
    return r


def config(retention_ms=3_600_000, options=()):
    return record(retention_ms=retention_ms, options=list(options))


@unittest.skipIf(wasmtime is None, "wasmtime-py is not installed")
@unittest.skipUnless(os.path.exists(WASM), "iqr.wasm is not built (run build.sh)")
class ComponentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = wasmtime.Engine()
        cls.component = cm.Component.from_file(cls.engine, WASM)
        cls.linker = cm.Linker(cls.engine)
        cls.linker.add_wasip2()

    def setUp(self):
        # A fresh instance per test, as the proxy makes a fresh one after a trap.
        self.store = wasmtime.Store(self.engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        self.instance = self.linker.instantiate(self.store, self.component)
        self.iface = self.instance.get_export_index(self.store, INTERFACE)

    def call(self, name, *args):
        index = self.instance.get_export_index(self.store, name, self.iface)
        func = self.instance.get_func(self.store, index)
        out = func(self.store, *args)
        func.post_return(self.store)
        return out

    def create(self, **kw):
        return self.call("[static]sketch.create", config(**kw))

    def assert_error(self, value, tag):
        self.assertIsInstance(value, cm.Variant, value)
        self.assertEqual(value.tag, tag, value)

    def test_info(self):
        info = self.call("info")
        self.assertEqual((info.name, info.version), ("iqr", "0.1.0"))
        self.assertEqual([(f.name, f.bound.relative) for f in info.functions], [(FN, 0.0)])

    def test_errors_are_variants(self):
        self.assert_error(self.create(options=[("alpha", "1")]), "invalid-config")
        self.assert_error(self.create(retention_ms=0), "invalid-config")
        s = self.create()
        self.assertIsNone(self.call("[method]sketch.insert", s, [1000, 2000, 3000, 4000], [5.0, 1.0, 2.0, 10.0]))
        out_of_order = self.call("[method]sketch.insert", s, [5000, 5000], [1.0, 2.0])
        self.assert_error(out_of_order, "out-of-order")
        self.assertEqual(out_of_order.payload, 5000)
        self.assert_error(self.call("[method]sketch.insert", s, [5000], []), "invalid-argument")
        self.assert_error(self.call("[method]sketch.query", s, FN, [], 2, 1), "invalid-argument")
        bad_range = record(start_ms=0, end_ms=10, step_ms=0, window_ms=1)
        self.assert_error(self.call("[method]sketch.query-range", s, FN, [], bad_range), "invalid-argument")
        self.assert_error(self.call("[static]sketch.restore", config(), b"SPSKv002" + bytes(40)), "bad-snapshot")

    def test_answers_and_snapshot(self):
        s = self.create()
        self.call("[method]sketch.insert", s, [1000, 2000, 3000, 4000], [5.0, 1.0, 2.0, 10.0])
        answer = self.call("[method]sketch.query", s, FN, [], 0, 10_000)
        self.assertEqual((answer.value, answer.bound, answer.samples), (4.5, 0.0, 4))
        steps = self.call("[method]sketch.query-range", s, FN, [],
                          record(start_ms=0, end_ms=5000, step_ms=1000, window_ms=2000))
        self.assertEqual([a and (a.value, a.samples) for a in steps],
                         [None, (0.0, 1), (2.0, 2), (2.0, 3), (4.5, 3), (4.0, 2)])
        self.assertEqual(self.call("[method]sketch.coverage", s), (1000, 4000))
        snapshot = self.call("[method]sketch.snapshot", s)
        self.assertIsInstance(snapshot, bytes)
        restored = self.call("[static]sketch.restore", config(), snapshot)
        again = self.call("[method]sketch.query", restored, FN, [], 0, 10_000)
        self.assertEqual((again.value, again.samples), (4.5, 4))

    def test_trap_on_value_traps(self):
        s = self.create(options=[("trap_on_value", "42")])
        self.assertIsNone(self.call("[method]sketch.insert", s, [1], [41.0]))
        with self.assertRaises(wasmtime.WasmtimeError):
            self.call("[method]sketch.insert", s, [2], [42.0])


if __name__ == "__main__":
    unittest.main()
