//! Which app serves a request path, for sites of many apps (WAGI's `modules.toml`); a single
//! package is the site of one app at `/...`.
//!
//! Routes are written as WAGI writes them: `/x` matches exactly `/x`; `/x/...` matches `/x`,
//! `/x/` and everything under `/x/`, never `/xy`; `/...` matches every path. The most specific
//! route wins whatever the order they were given in: an exact route over any wildcard, a longer
//! wildcard over a shorter one. (WAGI took the first match in file order, with a TODO saying
//! so; Spin's router orders by specificity, as here.)

use std::fmt;

/// A route as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoutePattern {
    /// `/x`: this path only.
    Exact(String),
    /// `/x/...` (or `/...`, the prefix being empty): the prefix and everything under it.
    Prefix(String),
}

const WILDCARD: &str = "/...";

impl RoutePattern {
    /// Parses a route: an absolute path, optionally ending in `/...`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("route {text:?} must start with /"));
        }
        let (path, wildcard) = match text.strip_suffix(WILDCARD) {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if path.contains("...") {
            return Err(format!(
                "route {text:?}: `...` may only end a route, as `/...` (everything under it)"
            ));
        }
        if wildcard {
            Ok(RoutePattern::Prefix(path.to_string()))
        } else {
            Ok(RoutePattern::Exact(path.to_string()))
        }
    }

    /// This pattern under `parent` (a `_routes` entry of a module at `parent`): the parent's
    /// route without `/...`, then this one.
    pub fn under(&self, parent: &RoutePattern) -> RoutePattern {
        let base = match parent {
            RoutePattern::Exact(path) | RoutePattern::Prefix(path) => path.trim_end_matches('/'),
        };
        match self {
            RoutePattern::Exact(path) => RoutePattern::Exact(format!("{base}{path}")),
            RoutePattern::Prefix(path) => RoutePattern::Prefix(format!("{base}{path}")),
        }
    }

    /// `SCRIPT_NAME` and the rest of the path (for `PATH_INFO`), if `path` matches.
    fn split<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        match self {
            RoutePattern::Exact(exact) => (path == exact).then_some((path, "")),
            RoutePattern::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
                    .then(|| path.split_at(prefix.len()))
            }
        }
    }

    /// Higher wins: exact routes over wildcards, then longer over shorter.
    fn specificity(&self) -> (bool, usize) {
        match self {
            RoutePattern::Exact(path) => (true, path.len()),
            RoutePattern::Prefix(path) => (false, path.len()),
        }
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(path) => f.write_str(path),
            RoutePattern::Prefix(prefix) => write!(f, "{prefix}{WILDCARD}"),
        }
    }
}

/// A route that matched a path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    pub target: &'a T,
    pub pattern: &'a RoutePattern,
    /// The part of the path the route names (`SCRIPT_NAME`): the prefix of a wildcard, the
    /// whole path of an exact route, empty for `/...`.
    pub script_name: &'a str,
    /// The rest (`PATH_INFO`): empty for an exact route.
    pub path_info: &'a str,
}

/// Routes, each with what serves it and a name for messages, in matching order.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<(RoutePattern, String, T)>,
}

impl<T> RouteTable<T> {
    /// A table of `(route, who serves it, target)`; two targets at one route are refused,
    /// naming both.
    pub fn new(mut routes: Vec<(RoutePattern, String, T)>) -> Result<Self, String> {
        // Stable: equal routes stay in the order given, for the message below.
        routes.sort_by_key(|(pattern, ..)| std::cmp::Reverse(pattern.specificity()));
        for pair in routes.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!(
                    "route {} is given twice, to {} and to {}; give each its own route",
                    pair[0].0, pair[0].1, pair[1].1
                ));
            }
        }
        Ok(RouteTable { routes })
    }

    /// The most specific route matching `path`.
    pub fn lookup<'a>(&'a self, path: &'a str) -> Option<RouteMatch<'a, T>> {
        self.routes.iter().find_map(|(pattern, _, target)| {
            let (script_name, path_info) = pattern.split(path)?;
            Some(RouteMatch {
                target,
                pattern,
                script_name,
                path_info,
            })
        })
    }

    /// The routes in matching order, with who serves each.
    pub fn iter(&self) -> impl Iterator<Item = (&RoutePattern, &str, &T)> {
        self.routes
            .iter()
            .map(|(pattern, name, target)| (pattern, name.as_str(), target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[&str]) -> RouteTable<String> {
        RouteTable::new(
            routes
                .iter()
                .map(|route| {
                    let pattern = RoutePattern::parse(route).unwrap();
                    (pattern, format!("module for {route}"), route.to_string())
                })
                .collect(),
        )
        .unwrap()
    }

    /// (which route served `path`, SCRIPT_NAME, PATH_INFO)
    fn served<'a>(
        table: &'a RouteTable<String>,
        path: &'a str,
    ) -> Option<(&'a str, &'a str, &'a str)> {
        table
            .lookup(path)
            .map(|m| (m.target.as_str(), m.script_name, m.path_info))
    }

    #[test]
    fn routes_parse_as_wagi_writes_them() {
        assert_eq!(
            RoutePattern::parse("/x"),
            Ok(RoutePattern::Exact("/x".into()))
        );
        assert_eq!(
            RoutePattern::parse("/x/..."),
            Ok(RoutePattern::Prefix("/x".into()))
        );
        assert_eq!(
            RoutePattern::parse("/..."),
            Ok(RoutePattern::Prefix("".into()))
        );
        assert_eq!(
            RoutePattern::parse("/"),
            Ok(RoutePattern::Exact("/".into()))
        );
        assert!(
            RoutePattern::parse("x")
                .unwrap_err()
                .contains("must start with /")
        );
        assert!(RoutePattern::parse("/a.../b").is_err());
        assert_eq!(RoutePattern::parse("/x/...").unwrap().to_string(), "/x/...");
    }

    #[test]
    fn a_wildcard_matches_its_prefix_and_below_it_never_a_longer_name() {
        let table = table(&["/x/..."]);
        assert_eq!(served(&table, "/x"), Some(("/x/...", "/x", "")));
        assert_eq!(served(&table, "/x/"), Some(("/x/...", "/x", "/")));
        assert_eq!(served(&table, "/x/a/b"), Some(("/x/...", "/x", "/a/b")));
        assert_eq!(served(&table, "/xy"), None);
        assert_eq!(served(&table, "/"), None);
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order() {
        for order in [
            ["/...", "/x/...", "/x/y/...", "/x/y"],
            ["/x/y", "/x/y/...", "/x/...", "/..."],
            ["/x/...", "/x/y", "/...", "/x/y/..."],
        ] {
            let table = table(&order);
            assert_eq!(
                served(&table, "/x/y"),
                Some(("/x/y", "/x/y", "")),
                "{order:?}"
            );
            assert_eq!(served(&table, "/x/y/z"), Some(("/x/y/...", "/x/y", "/z")));
            assert_eq!(served(&table, "/x/q"), Some(("/x/...", "/x", "/q")));
            assert_eq!(served(&table, "/other"), Some(("/...", "", "/other")));
        }
    }

    #[test]
    fn two_modules_at_one_route_are_refused_naming_both() {
        let error = RouteTable::new(vec![
            (
                RoutePattern::parse("/a/...").unwrap(),
                "first.wasm".into(),
                (),
            ),
            (RoutePattern::parse("/b").unwrap(), "other.wasm".into(), ()),
            (
                RoutePattern::parse("/a/...").unwrap(),
                "second.wasm".into(),
                (),
            ),
        ])
        .unwrap_err();
        assert_eq!(
            error,
            "route /a/... is given twice, to first.wasm and to second.wasm; give each its own \
             route"
        );
    }

    #[test]
    fn sub_routes_join_their_parent() {
        let parent = RoutePattern::parse("/dyn/...").unwrap();
        let exact = RoutePattern::parse("/exact").unwrap().under(&parent);
        assert_eq!(exact.to_string(), "/dyn/exact");
        let wild = RoutePattern::parse("/wild/...").unwrap().under(&parent);
        assert_eq!(wild.to_string(), "/dyn/wild/...");
        let root = RoutePattern::parse("/")
            .unwrap()
            .under(&RoutePattern::parse("/...").unwrap());
        assert_eq!(root.to_string(), "/");
    }
}
