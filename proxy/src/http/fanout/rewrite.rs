//! Selectors over endpoints with external labels (`match[]`, an exemplar query's):
//! matchers on an endpoint's external labels are checked in the proxy, and the request
//! it gets carries the selectors without them (its storage does not hold those labels,
//! so it would select nothing).

use bytes::Bytes;
use http::request::Parts;
use promql_parser::label::Matchers;

use super::Target;

/// The `match[]` selectors as `target` is asked them; `None` when its external labels
/// fail every selector, so it is not asked.
pub fn matches_for(target: &Target, selectors: &[Matchers]) -> Option<Vec<String>> {
    let kept: Vec<String> = selectors.iter().filter_map(|s| stripped(target, s)).collect();
    (!kept.is_empty()).then_some(kept)
}

/// `selector` without its matchers on `target`'s external labels, or `None` when one
/// of them fails.
fn stripped(target: &Target, selector: &Matchers) -> Option<String> {
    // `{a="1" or b="2"}` is refused by the checks (Prometheus 2.42 has no `or` there).
    if !selector.or_matchers.is_empty() {
        return Some(format!("{{{selector}}}"));
    }
    let kept = target.endpoint.without_external(selector)?.matchers;
    let mut text: Vec<String> = kept.iter().map(ToString::to_string).collect();
    // A selector must keep a matcher that rejects the empty value; every series has
    // a name.
    if kept.iter().all(|m| m.is_match("")) {
        text.push(r#"__name__=~".+""#.to_owned());
    }
    Some(format!("{{{}}}", text.join(",")))
}

/// An exemplar query selecting what `selectors` select: the query's selectors joined
/// by `or` (Prometheus reads nothing but the selectors of an exemplar query).
pub fn exemplar_query(selectors: &[String]) -> String {
    selectors.join(" or ")
}

/// The request's path with query and its body for one endpoint: asking for the names
/// of its series instead of the values of `presence` (an external label of it), with
/// the `set` parameter's values replaced (in the form body of a form POST, else in the
/// URL), and without `storeMatch[]`.
pub fn rewritten(
    parts: &Parts,
    path_and_query: &str,
    body: &Bytes,
    presence: Option<&str>,
    set: Option<(&str, &[String])>,
) -> (String, Bytes) {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let path = match presence {
        Some(name) => path.replace(&format!("/label/{name}/values"), "/label/__name__/values"),
        None => path.to_owned(),
    };
    let is_form = parts.method == http::Method::POST
        && parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (name, values) = set.unwrap_or(("", &[]));
    let encode = |raw: &[u8], add: bool| {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let kept =
            form_urlencoded::parse(raw).filter(|(k, _)| k != "storeMatch[]" && (set.is_none() || k != name));
        for (k, v) in kept {
            out.append_pair(&k, &v);
        }
        if add {
            for value in values {
                out.append_pair(name, value);
            }
        }
        out.finish()
    };
    let query = encode(query.as_bytes(), !is_form);
    let body = if is_form {
        Bytes::from(encode(body, true))
    } else {
        body.clone()
    };
    if query.is_empty() {
        (path, body)
    } else {
        (format!("{path}?{query}"), body)
    }
}
