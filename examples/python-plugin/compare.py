#!/usr/bin/env python3
"""End-to-end check of the iqr plugin: remote-writes one series through a running
sketch-proxy, then asks the proxy for `iqr_over_time(m[w])` (instant and range queries)
and the Prometheus behind it for `quantile_over_time(0.75, m[w]) -
quantile_over_time(0.25, m[w])`, and compares the answers. Exits 1 on any difference.

Standard library only: the remote-write body (prompb.WriteRequest) is encoded by hand
and "compressed" as snappy literals, which every snappy decoder accepts.

    python3 compare.py --proxy http://127.0.0.1:19090 --prometheus http://127.0.0.1:9090

The proxy needs `ingest.enabled: true`, the plugin loaded (`plugins.dir`) and, for the
sketch path, a rule such as `{match: 'iqr_demo', functions: [iqr_over_time]}`.
"""

import argparse
import json
import random
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


# === remote write: protobuf and snappy by hand ===

def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 as two's complement
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def write_request(labels: dict, samples) -> bytes:
    """prompb.WriteRequest{timeseries: [TimeSeries{labels, samples}]}."""
    series = b"".join(
        _field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in sorted(labels.items())
    )
    for t, v in samples:
        sample = b"\x09" + struct.pack("<d", v) + b"\x10" + _varint(t)  # 1: double, 2: int64
        series += _field(2, sample)
    return _field(1, series)


def snappy_literal(data: bytes) -> bytes:
    """A valid snappy block holding `data` uncompressed (literal elements)."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        out += bytes([61 << 2]) + struct.pack("<H", len(chunk) - 1) + chunk
    return bytes(out)


def remote_write(url: str, labels: dict, samples) -> None:
    body = snappy_literal(write_request(labels, samples))
    req = urllib.request.Request(url.rstrip("/") + "/api/v1/write", data=body, method="POST", headers={
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    })
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"remote write answered {e.code}: {e.read().decode(errors='replace').strip()}") from None


# === queries ===

def api(base: str, path: str, params: dict):
    """(data, warnings, X-Answered-By) of a Prometheus API call."""
    url = base.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = json.load(resp)
        answered = resp.headers.get("X-Answered-By", "")
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"], body.get("warnings", []), answered


def points(data) -> list:
    """[(time, value string)] of a one-series vector or matrix."""
    result = data["result"]
    if not result:
        return []
    if len(result) != 1:
        raise RuntimeError(f"expected one series, got {len(result)}")
    series = result[0]
    return [tuple(p) for p in series["values"]] if "values" in series else [tuple(series["value"])]


def same(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return x == y or (x != x and y != y)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxy", default="http://127.0.0.1:19090")
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--metric", default="iqr_demo")
    p.add_argument("--job", default="iqr-demo", help="the series' job label")
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--interval", type=float, default=3.0, help="seconds between samples")
    p.add_argument("--batch", type=int, default=100, help="samples per remote-write request")
    p.add_argument("--windows", default="5m,15m", help="range selector windows to compare")
    p.add_argument("--skip-write", action="store_true", help="compare what is already written")
    args = p.parse_args()

    selector = f'{args.metric}{{job="{args.job}"}}'
    step_ms = int(args.interval * 1000)
    # Samples end a little before now, off the query times' grid by 500 ms.
    end_ms = (int(time.time()) - 5) * 1000 + 500
    first = end_ms - (args.samples - 1) * step_ms
    rng = random.Random(42)
    samples = [(first + i * step_ms, round(rng.lognormvariate(3, 0.6), 3)) for i in range(args.samples)]
    if not args.skip_write:
        for i in range(0, len(samples), args.batch):
            remote_write(args.proxy, {"__name__": args.metric, "job": args.job}, samples[i:i + args.batch])
        # The proxy queues samples and forwards them; wait until Prometheus has them all.
        deadline = time.time() + 60
        while time.time() < deadline:
            data, _, _ = api(args.prometheus, "/api/v1/query",
                             {"query": f"count_over_time({selector}[1d])", "time": end_ms / 1000})
            have = points(data)
            if have and int(float(have[0][1])) >= args.samples:
                break
            time.sleep(0.5)
        else:
            print("Prometheus did not receive every sample within 60 s", file=sys.stderr)
            return 1
        print(f"wrote {args.samples} samples of {selector} through {args.proxy}")

    t = end_ms // 1000 + 1
    failures = 0
    for window in args.windows.split(","):
        ours = f"iqr_over_time({selector}[{window}])"
        theirs = f"quantile_over_time(0.75, {selector}[{window}]) - quantile_over_time(0.25, {selector}[{window}])"
        cases = [
            ("query", {"time": t}),
            ("query_range", {"start": t - 600, "end": t, "step": 15}),
        ]
        for kind, params in cases:
            a, warnings, answered = api(args.proxy, f"/api/v1/{kind}", {"query": ours, **params})
            b, _, _ = api(args.prometheus, f"/api/v1/{kind}", {"query": theirs, **params})
            pa, pb = points(a), points(b)
            equal = len(pa) == len(pb) and all(x[0] == y[0] and same(x[1], y[1]) for x, y in zip(pa, pb))
            failures += not equal
            shown = pa[-1][1] if pa else None
            print(f"{'OK  ' if equal else 'DIFF'} {kind:11} {ours}: {len(pa)} points, last {shown} "
                  f"(Prometheus: {len(pb)} points, last {pb[-1][1] if pb else None}); "
                  f"answered by {answered or '?'}; {'; '.join(warnings)}")
            if not equal:
                for x, y in zip(pa, pb):
                    if x != y:
                        print(f"     at {x[0]}: proxy {x[1]}  prometheus {y[1]}")
    print("all equal" if failures == 0 else f"{failures} comparisons differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
