//! The frequency functions of PromSketch over the frequencies of exact sample values:
//! `distinct_over_time(v[w])` (distinct values), `entropy_over_time(v[w])` (Shannon
//! entropy in bits of the value distribution) and `l2_over_time(v[w])` (square root of
//! the sum of squared frequencies). Exact below 1,000 samples, within 2% above.
//!
//! One plugin serves the three so that a series keeps its samples and summaries once
//! for all of them; the SDK's [`FrequencyPlugin`] does the work.

pub use sketch_plugin_sdk::FrequencyPlugin;
use sketch_plugin_sdk::export_plugin;

export_plugin!(FrequencyPlugin);
