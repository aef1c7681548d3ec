"""`iqr`: a sketch-proxy plugin written in Python (componentize-py), against wit/sketch.wit.

`iqr_over_time(v[w])` is the interquartile range of the samples in the window, exactly
as PromQL computes `quantile_over_time(0.75, v[w]) - quantile_over_time(0.25, v[w])`.

This module implements the `plugin` interface's free function `info`; the `sketch`
resource is the class `Sketch` in `plugin.py` (componentize-py finds a resource's
implementation in the module named after its interface).

Everything the plugin needs is imported here, at build time: componentize-py
pre-initializes the interpreter with this module imported and ships that snapshot, so
the component has no Python files to import from when it runs.
"""

import plugin  # noqa: F401  (the `sketch` resource; imported so it is in the snapshot)
from wit_world import exports
from wit_world.exports.plugin import ErrorBound, FunctionInfo, PluginInfo

VERSION = "0.1.0"


class Plugin(exports.Plugin):
    def info(self) -> PluginInfo:
        return PluginInfo(
            name="iqr",
            version=VERSION,
            functions=[
                FunctionInfo(
                    name=plugin.FUNCTION,
                    scalar_args=[],
                    # The raw samples are kept, so every answer is exact.
                    bound=ErrorBound(relative=0.0, min_samples=0),
                    description="interquartile range (quantile 0.75 - 0.25, Prometheus "
                    "interpolation) of the values in the window (exact; Python)",
                )
            ],
        )
