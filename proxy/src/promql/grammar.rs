//! What one runtime accepts as PromQL: the shape limits, and the functions of the
//! custom plugins it loaded.
//!
//! `promql-parser` keeps one function registry per process, and names in it must be
//! `&'static str`. A custom function is registered there the first time any runtime
//! loads a plugin that declares it, and stays; a runtime whose plugins do not declare
//! it refuses it after parsing, with the parser's own words. So a plugin removed on
//! reload takes its functions with it, and two proxies in one process (tests) each
//! accept only their own.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use parking_lot::RwLock;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, Function};
use promql_parser::util::{ExprVisitor, walk_expr};

use super::{PROXY_FUNCTIONS, ParseError, ShapeLimits};

/// A function a custom plugin declares: `name(scalar, …, range-vector)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CustomFunction {
    /// Its name.
    pub name: String,
    /// How many scalar arguments come before the range vector.
    pub scalar_args: usize,
}

/// Custom functions registered with `promql-parser` so far, with their scalar arity.
/// Names are leaked once each: there are as many as distinct plugin functions ever
/// loaded, a handful.
static REGISTERED: LazyLock<RwLock<HashMap<&'static str, usize>>> = LazyLock::new(RwLock::default);

/// The PromQL one runtime accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grammar {
    /// Bounds on a query's text.
    pub shape: ShapeLimits,
    custom: BTreeSet<String>,
}

impl Grammar {
    /// A grammar with `custom` functions besides PromQL's and the proxy's own, which
    /// are registered with the parser now. A name PromQL already has is skipped (the
    /// plugin loader refuses such plugins).
    pub fn new(shape: ShapeLimits, custom: &[CustomFunction]) -> Self {
        super::register_functions();
        let mut registered = REGISTERED.write();
        let mut accepted = BTreeSet::new();
        for f in custom {
            if PROXY_FUNCTIONS.contains(&f.name.as_str()) || f.name == "quantile_over_time" {
                continue;
            }
            // Registered again whatever its arity was: the newest plugin declaring a
            // name sets it for the process (runtimes that load one plugin each, as
            // the proxy does, never disagree).
            let name: &'static str = match registered.get_key_value(f.name.as_str()) {
                Some((name, _)) => name,
                None => Box::leak(f.name.clone().into_boxed_str()),
            };
            let mut args = vec![ValueType::Scalar; f.scalar_args];
            args.push(ValueType::Matrix);
            let function = Function::new(name, args, 0, ValueType::Vector, false);
            if parser::function::register_extra_functions(vec![function]).is_ok() {
                registered.insert(name, f.scalar_args);
                accepted.insert(f.name.clone());
            }
        }
        Self {
            shape,
            custom: accepted,
        }
    }

    /// Parses `query` within the shape limits, refusing custom functions this grammar
    /// does not have.
    pub fn parse(&self, query: &str) -> Result<Expr, ParseError> {
        let expr = super::parse_within(query, &self.shape)?;
        self.check_functions(&expr)?;
        Ok(expr)
    }

    /// Whether `name` is one of this grammar's custom functions.
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.contains(name)
    }

    /// The custom functions.
    pub fn custom(&self) -> impl Iterator<Item = &str> {
        self.custom.iter().map(String::as_str)
    }

    /// Functions `expr` calls that downstream does not know (the proxy's own and the
    /// custom ones), in order of appearance, without repeats.
    pub fn proxy_functions_used(&self, expr: &Expr) -> Vec<String> {
        let mut used = Vec::new();
        for_each_call(expr, |name| {
            let ours = PROXY_FUNCTIONS.contains(&name) || self.custom.contains(name);
            if ours && !used.iter().any(|u| u == name) {
                used.push(name.to_owned());
            }
            true
        });
        used
    }

    /// A custom function another runtime registered is unknown here, as it would be to
    /// the parser.
    fn check_functions(&self, expr: &Expr) -> Result<(), ParseError> {
        let registered = REGISTERED.read();
        // The usual case, one runtime in the process: every registered name is ours,
        // and the query's calls need no walk.
        if registered.keys().all(|name| self.custom.contains(*name)) {
            return Ok(());
        }
        let mut unknown = None;
        for_each_call(expr, |name| {
            if registered.contains_key(name) && !self.custom.contains(name) {
                unknown = Some(name.to_owned());
            }
            unknown.is_none()
        });
        match unknown {
            Some(name) => Err(ParseError::Syntax {
                message: format!("unknown function with name '{name}'"),
            }),
            None => Ok(()),
        }
    }
}

/// Calls `f` with the name of every function call in `expr` until it returns false.
fn for_each_call(expr: &Expr, f: impl FnMut(&str) -> bool) {
    struct Calls<F>(F);
    impl<F: FnMut(&str) -> bool> ExprVisitor for Calls<F> {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            Ok(match expr {
                Expr::Call(call) => (self.0)(call.func.name),
                _ => true,
            })
        }
    }
    // The visitor is infallible.
    let _ = walk_expr(&mut Calls(f), expr);
}

#[cfg(test)]
mod tests;
