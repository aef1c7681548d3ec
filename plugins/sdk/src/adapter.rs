//! The generic glue between [`Plugin`] and the generated WIT exports.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::bindings::exports::sketch_proxy::sketch::plugin as wit;
use crate::plugin::{Bound, Call, Error, Plugin, PluginInfo};
use crate::series::Series;

/// Implements the WIT exports for any [`Plugin`]; named by [`crate::export_plugin!`].
#[derive(Debug)]
pub struct Adapter<P>(PhantomData<P>);

/// The resource behind one WIT `sketch` handle.
#[derive(Debug)]
pub struct SketchResource<P: Plugin> {
    series: RefCell<Series<P>>,
}

fn info<P: Plugin>() -> &'static PluginInfo {
    // One plugin per component, so one cell per monomorphization is enough; a generic
    // static is not allowed, hence the leak (done once per instance).
    static INFO: OnceLock<&'static PluginInfo> = OnceLock::new();
    INFO.get_or_init(|| Box::leak(Box::new(P::info())))
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidConfig(s) => wit::Error::InvalidConfig(s),
            Error::InvalidArgument(s) => wit::Error::InvalidArgument(s),
            Error::OutOfOrder(t) => wit::Error::OutOfOrder(t),
            Error::BadSnapshot(s) => wit::Error::BadSnapshot(s),
            Error::Other(s) => wit::Error::Other(s),
        }
    }
}

fn to_wit_info(info: &PluginInfo) -> wit::PluginInfo {
    wit::PluginInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        functions: info
            .functions
            .iter()
            .map(|f| wit::FunctionInfo {
                name: f.name.clone(),
                scalar_args: f.scalar_args.clone(),
                bound: wit::ErrorBound {
                    relative: f.bound.relative,
                    min_samples: f.bound.min_samples,
                },
                description: f.description.clone(),
            })
            .collect(),
    }
}

/// Resolves a function name and checks the argument count.
fn call<'a, P: Plugin>(function: &str, args: &'a [f64]) -> Result<(Call<'a>, Bound), Error> {
    let info = info::<P>();
    let (index, f) = info
        .functions
        .iter()
        .enumerate()
        .find(|(_, f)| f.name == function)
        .ok_or_else(|| Error::InvalidArgument(format!("plugin {} does not serve {function}", info.name)))?;
    if args.len() != f.scalar_args.len() {
        return Err(Error::InvalidArgument(format!(
            "{function} takes {} scalar argument(s), got {}",
            f.scalar_args.len(),
            args.len()
        )));
    }
    Ok((Call::new(index, args), f.bound))
}

fn to_estimate((value, bound, samples): (f64, f64, u64)) -> wit::Estimate {
    wit::Estimate {
        value,
        bound,
        samples,
    }
}

impl<P: Plugin> wit::Guest for Adapter<P> {
    type Sketch = SketchResource<P>;

    fn info() -> wit::PluginInfo {
        to_wit_info(info::<P>())
    }
}

impl<P: Plugin> wit::GuestSketch for SketchResource<P> {
    fn create(config: wit::SketchConfig) -> Result<wit::Sketch, wit::Error> {
        let plugin = P::configure(&config.options)?;
        let series = Series::new(plugin, config.retention_ms)?;
        Ok(wit::Sketch::new(Self {
            series: RefCell::new(series),
        }))
    }

    fn restore(config: wit::SketchConfig, snapshot: Vec<u8>) -> Result<wit::Sketch, wit::Error> {
        let plugin = P::configure(&config.options)?;
        let series = Series::restore(plugin, config.retention_ms, &snapshot)?;
        Ok(wit::Sketch::new(Self {
            series: RefCell::new(series),
        }))
    }

    fn insert(&self, timestamps: Vec<i64>, values: Vec<f64>) -> Result<(), wit::Error> {
        Ok(self.series.borrow_mut().insert(&timestamps, &values)?)
    }

    fn query(
        &self,
        function: String,
        args: Vec<f64>,
        t0: i64,
        t1: i64,
    ) -> Result<Option<wit::Estimate>, wit::Error> {
        let (call, bound) = call::<P>(&function, &args)?;
        if t0 > t1 {
            return Err(Error::InvalidArgument(format!("t0 {t0} is after t1 {t1}")).into());
        }
        Ok(self
            .series
            .borrow_mut()
            .query(call, bound, t0, t1)
            .map(to_estimate))
    }

    fn query_range(
        &self,
        function: String,
        args: Vec<f64>,
        range: wit::RangeRequest,
    ) -> Result<Vec<Option<wit::Estimate>>, wit::Error> {
        let (call, bound) = call::<P>(&function, &args)?;
        let steps = range
            .end_ms
            .checked_sub(range.start_ms)
            .and_then(|span| span.checked_div(range.step_ms))
            .map(|n| n.saturating_add(1));
        let too_many = steps.is_none_or(|n| n > crate::series::MAX_RANGE_STEPS);
        if range.step_ms <= 0 || range.window_ms < 0 || range.start_ms > range.end_ms || too_many {
            return Err(Error::InvalidArgument(format!(
                "bad range: start {} end {} step {} window {} (at most {} steps)",
                range.start_ms,
                range.end_ms,
                range.step_ms,
                range.window_ms,
                crate::series::MAX_RANGE_STEPS
            ))
            .into());
        }
        let answers = self.series.borrow_mut().query_range(
            call,
            bound,
            (range.start_ms, range.end_ms, range.step_ms, range.window_ms),
        );
        Ok(answers.into_iter().map(|a| a.map(to_estimate)).collect())
    }

    fn coverage(&self) -> Option<(i64, i64)> {
        self.series.borrow_mut().coverage()
    }

    fn memory_bytes(&self) -> u64 {
        self.series.borrow().memory_bytes() as u64
    }

    fn snapshot(&self) -> Vec<u8> {
        self.series.borrow().snapshot()
    }
}
