//! Meta-variables for one request (RFC 3875 §4.1), and the static environment layered under them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{HeaderMap, Method, Uri, Version, header};
use percent_encoding::percent_decode_str;

use super::routing::ScriptRoute;

/// Request headers that never reach the guest as `HTTP_*`: credentials (the guest gets only
/// `AUTH_TYPE`) and `Proxy`, whose `HTTP_PROXY` would poison outbound clients (httpoxy).
const WITHHELD_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "proxy"];

/// Variables derived from the request itself. Static configuration may never set these:
/// a guest must be able to trust that they describe the request it is serving.
const REQUEST_DERIVED: [&str; 14] = [
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "HTTPS",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
];

fn is_request_derived(key: &str) -> bool {
    key.starts_with("HTTP_") || REQUEST_DERIVED.contains(&key)
}

/// The environment that is the same for every request: host environment (when forwarded),
/// then the command's annotation `env`, then `--env`, later layers winning. Built once.
#[derive(Debug, Clone, Default)]
pub struct StaticEnv {
    vars: BTreeMap<String, String>,
    ignored: Vec<String>,
}

impl StaticEnv {
    /// Merges layers in order of increasing precedence, dropping request-derived names.
    pub fn from_layers<I, L>(layers: I) -> Self
    where
        I: IntoIterator<Item = L>,
        L: IntoIterator<Item = (String, String)>,
    {
        let mut env = StaticEnv::default();
        for (key, value) in layers.into_iter().flatten() {
            if is_request_derived(&key) {
                if !env.ignored.contains(&key) {
                    env.ignored.push(key);
                }
            } else {
                env.vars.insert(key, value);
            }
        }
        env
    }

    /// The variables, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Names that were configured but are request-derived, so they are ignored.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }
}

/// A request that cannot be expressed as CGI meta-variables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("the request path does not decode to UTF-8 text")]
    PathNotUtf8,
    #[error("the request contains a NUL byte, which cannot be passed in an environment variable")]
    NulByte,
}

/// Everything about one HTTP request that the CGI environment is made from.
#[derive(Debug, Clone)]
pub struct CgiRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    /// The URI's path, percent-decoded once per request ([`decoded_path`]).
    pub path: &'a str,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub remote: SocketAddr,
    /// The address of the socket the request arrived on.
    pub local: SocketAddr,
    /// Length of the body the guest will read on stdin; `None` when the request has no body.
    pub body_len: Option<u64>,
    /// The part of the path the site's matched route names (`SCRIPT_NAME`; empty for `/...`).
    pub script_name: &'a str,
    /// The rest of the path, decoded: `PATH_INFO` of a program that routes no scripts.
    pub path_info: &'a str,
    /// The route as written (`/x/...`), for `X_MATCHED_ROUTE`.
    pub matched_route: &'a str,
    /// The script the request runs, when the command routes scripts under a document root
    /// (within `path_info`).
    pub route: Option<&'a ScriptRoute>,
}

/// The request path, percent-decoded (`PATH_INFO` and script routing work on this).
pub fn decoded_path(uri: &Uri) -> Result<String, RequestError> {
    percent_decode_str(uri.path())
        .decode_utf8()
        .map(|path| path.into_owned())
        .map_err(|_| RequestError::PathNotUtf8)
}

impl CgiRequest<'_> {
    /// The guest's environment for this request: server defaults, overridden by the static
    /// environment, overridden in turn by everything derived from the request.
    pub fn env(&self, static_env: &StaticEnv) -> Result<Vec<(String, String)>, RequestError> {
        let raw_path = self.uri.path();

        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |key: &str, value: String| env.insert(key.to_string(), value);

        // Server defaults: configuration may override these.
        set("GATEWAY_INTERFACE", "CGI/1.1".into());
        set(
            "SERVER_SOFTWARE",
            concat!("wcgi/", env!("CARGO_PKG_VERSION")).into(),
        );
        set("SERVER_NAME", self.server_name());
        set("SERVER_PORT", self.local.port().to_string());
        set("SCRIPT_NAME", self.script_name.to_string());
        set("DOCUMENT_ROOT", "/app/".into());
        set("SCRIPT_FILENAME", format!("/app{}", self.path));
        // php-cgi refuses to run without it (its force-cgi-redirect protection).
        set("REDIRECT_STATUS", "200".into());

        for (key, value) in &static_env.vars {
            set(key, value.clone());
        }

        // Request-derived values: nothing configured can override these.
        set("SERVER_PROTOCOL", protocol_name(self.version).into());
        set("REQUEST_METHOD", self.method.as_str().into());
        set(
            "REQUEST_URI",
            self.uri
                .path_and_query()
                .map_or(raw_path, |pq| pq.as_str())
                .into(),
        );
        set("QUERY_STRING", self.uri.query().unwrap_or_default().into());
        match self.route {
            // The routed script is a fact about this request, so it wins over configuration.
            Some(route) => {
                set(
                    "SCRIPT_NAME",
                    format!("{}{}", self.script_name, route.script_name),
                );
                set("SCRIPT_FILENAME", route.script_filename.clone());
                set("DOCUMENT_ROOT", route.document_root.clone());
                if !route.path_info.is_empty() {
                    // RFC 3875 §4.1.6: PATH_INFO mapped into the document root.
                    set(
                        "PATH_TRANSLATED",
                        format!("{}{}", route.document_root, route.path_info),
                    );
                }
                set("PATH_INFO", route.path_info.clone());
            }
            None => {
                set("PATH_INFO", self.path_info.to_string());
            }
        }
        // WAGI's additions, which its guests read.
        set("X_MATCHED_ROUTE", self.matched_route.to_string());
        set("X_RAW_PATH_INFO", self.raw_path_info().to_string());
        set("X_FULL_URL", self.full_url());
        set("REMOTE_ADDR", self.remote.ip().to_string());
        set("REMOTE_PORT", self.remote.port().to_string());
        if let Some(scheme) = self.auth_scheme() {
            set("AUTH_TYPE", scheme);
        }
        if let Some(len) = self.body_len {
            set("CONTENT_LENGTH", len.to_string());
            if let Some(content_type) = self.headers.get(header::CONTENT_TYPE) {
                set("CONTENT_TYPE", lossy(content_type.as_bytes()));
            }
        }
        for (key, value) in self.header_variables() {
            env.insert(key, value);
        }

        if env
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(RequestError::NulByte);
        }
        Ok(env.into_iter().collect())
    }

    /// `PATH_INFO` as the client sent it, not decoded: the raw path after the route's part,
    /// when the client spelt that part plainly (else the decoded rest is the best answer).
    fn raw_path_info(&self) -> &str {
        self.uri
            .path()
            .strip_prefix(self.script_name)
            .unwrap_or(self.path_info)
    }

    /// `X_FULL_URL`: `http://host[:port]/path?query`, the host as the client asked for it.
    fn full_url(&self) -> String {
        let host = self
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map_or_else(|| self.local.to_string(), str::to_string);
        let path = self
            .uri
            .path_and_query()
            .map_or(self.uri.path(), |pq| pq.as_str());
        format!("http://{host}{path}")
    }

    /// The argv of a WAGI template: `${SCRIPT_NAME}` is the route's path, `${PATH_INFO}` the
    /// rest, `${ARGS}` the query's `&`-separated items (decoded), every other word as it is.
    pub fn argv(&self, template: &[String]) -> Vec<String> {
        let query_items = || {
            self.uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|item| !item.is_empty())
                .map(|item| percent_decode_str(item).decode_utf8_lossy().into_owned())
        };
        let mut argv = Vec::new();
        for word in template {
            match word.as_str() {
                "${ARGS}" => argv.extend(query_items()),
                _ => argv.push(
                    word.replace("${SCRIPT_NAME}", self.script_name)
                        .replace("${PATH_INFO}", self.path_info),
                ),
            }
        }
        argv
    }

    /// `SERVER_NAME`: the host the client asked for, else the address it connected to.
    fn server_name(&self) -> String {
        let authority = self
            .headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.parse::<http::uri::Authority>().ok())
            .or_else(|| self.uri.authority().cloned());
        match authority {
            Some(authority) => authority.host().trim_matches(['[', ']']).to_string(),
            None => self.local.ip().to_string(),
        }
    }

    /// The scheme of the `Authorization` header (`Basic`, `Bearer`), never its credentials.
    fn auth_scheme(&self) -> Option<String> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let scheme = value.split_ascii_whitespace().next()?;
        Some(scheme.to_string())
    }

    /// `HTTP_*` variables: one per header name, repeated headers joined with `, `.
    ///
    /// Headers whose names contain `_` are dropped, as Apache and nginx do: `X_Foo` and `X-Foo`
    /// would both become `HTTP_X_FOO`, letting a client spoof a header a proxy vouched for.
    fn header_variables(&self) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.headers {
            let name = name.as_str();
            let carried_elsewhere = name == "content-type" || name == "content-length";
            if carried_elsewhere || name.contains('_') || WITHHELD_HEADERS.contains(&name) {
                continue;
            }
            let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
            let value = lossy(value.as_bytes());
            vars.entry(key)
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert(value);
        }
        vars
    }
}

fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Header values may carry obs-text bytes; the guest gets them as (lossy) UTF-8 text.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_for(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body_len: Option<u64>,
        static_env: &StaticEnv,
    ) -> BTreeMap<String, String> {
        let method: Method = method.parse().unwrap();
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let path = decoded_path(&uri).unwrap();
        let request = CgiRequest {
            method: &method,
            uri: &uri,
            path: &path,
            version: Version::HTTP_11,
            headers: &map,
            remote: "10.0.0.7:51234".parse().unwrap(),
            local: "127.0.0.1:8000".parse().unwrap(),
            body_len,
            script_name: "",
            path_info: &path,
            matched_route: "/...",
            route: None,
        };
        request.env(static_env).unwrap().into_iter().collect()
    }

    #[test]
    fn a_get_request_has_every_meta_variable() {
        let env = env_for(
            "GET",
            "/a%20b/c?x=1&y=%41",
            &[("host", "example.test:8000")],
            None,
            &StaticEnv::default(),
        );
        let expect = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.test"),
            ("SERVER_PORT", "8000"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/a%20b/c?x=1&y=%41"),
            ("QUERY_STRING", "x=1&y=%41"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/a b/c"),
            ("REMOTE_ADDR", "10.0.0.7"),
            ("REMOTE_PORT", "51234"),
            ("REDIRECT_STATUS", "200"),
            ("DOCUMENT_ROOT", "/app/"),
            ("SCRIPT_FILENAME", "/app/a b/c"),
            ("HTTP_HOST", "example.test:8000"),
        ];
        for (key, value) in expect {
            assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
        }
        assert!(env["SERVER_SOFTWARE"].starts_with("wcgi/"));
        assert!(!env.contains_key("CONTENT_LENGTH"));
        assert!(!env.contains_key("CONTENT_TYPE"));
    }

    /// A request without a body, between two loopback ports.
    fn bodiless<'a>(
        method: &'a Method,
        uri: &'a Uri,
        path: &'a str,
        headers: &'a HeaderMap,
        route: Option<&'a ScriptRoute>,
    ) -> CgiRequest<'a> {
        CgiRequest {
            method,
            uri,
            path,
            version: Version::HTTP_11,
            headers,
            remote: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            body_len: None,
            script_name: "",
            path_info: path,
            matched_route: "/...",
            route,
        }
    }

    #[test]
    fn a_routed_script_sets_the_script_variables_over_configuration() {
        let method = Method::GET;
        let uri: Uri = "/x.php/a%20b?q=1".parse().unwrap();
        let headers = HeaderMap::new();
        let route = ScriptRoute {
            script_name: "/x.php".into(),
            path_info: "/a b".into(),
            script_filename: "/srv/x.php".into(),
            document_root: "/srv".into(),
        };
        let configured = StaticEnv::from_layers([vec![
            ("SCRIPT_FILENAME".to_string(), "/app/index.php".to_string()),
            ("DOCUMENT_ROOT".to_string(), "/app".to_string()),
        ]]);
        let path = decoded_path(&uri).unwrap();
        let request = bodiless(&method, &uri, &path, &headers, Some(&route));
        let env: BTreeMap<String, String> = request.env(&configured).unwrap().into_iter().collect();
        assert_eq!(env["SCRIPT_NAME"], "/x.php");
        assert_eq!(env["SCRIPT_FILENAME"], "/srv/x.php");
        assert_eq!(env["DOCUMENT_ROOT"], "/srv");
        assert_eq!(env["PATH_INFO"], "/a b");
        assert_eq!(env["PATH_TRANSLATED"], "/srv/a b");
        assert_eq!(env["REQUEST_URI"], "/x.php/a%20b?q=1");
    }

    #[test]
    fn credentials_and_proxy_headers_are_withheld() {
        let env = env_for(
            "GET",
            "/",
            &[
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("proxy-authorization", "Basic eA=="),
                ("proxy", "http://evil.test"),
                ("x_forwarded_for", "1.2.3.4"),
            ],
            None,
            &StaticEnv::default(),
        );
        assert_eq!(env["AUTH_TYPE"], "Basic");
        assert!(env.values().all(|v| !v.contains("dXNlcjpwYXNz")));
        for key in [
            "HTTP_AUTHORIZATION",
            "HTTP_PROXY_AUTHORIZATION",
            "HTTP_PROXY",
            "HTTP_X_FORWARDED_FOR",
        ] {
            assert!(!env.contains_key(key), "{key}");
        }
    }

    #[test]
    fn body_headers_become_content_variables_only() {
        let env = env_for(
            "POST",
            "/",
            &[
                ("content-type", "text/plain"),
                ("content-length", "5"),
                ("x-a", "1"),
                ("x-a", "2"),
            ],
            Some(5),
            &StaticEnv::default(),
        );
        assert_eq!(env["CONTENT_LENGTH"], "5");
        assert_eq!(env["CONTENT_TYPE"], "text/plain");
        assert_eq!(env["HTTP_X_A"], "1, 2");
        assert!(!env.contains_key("HTTP_CONTENT_TYPE"));
        assert!(!env.contains_key("HTTP_CONTENT_LENGTH"));
    }

    #[test]
    fn static_env_overrides_defaults_but_never_request_values() {
        let static_env = StaticEnv::from_layers([
            vec![
                ("DOCUMENT_ROOT".to_string(), "/srv".to_string()),
                ("A".into(), "annotation".into()),
            ],
            vec![
                ("A".into(), "flag".into()),
                ("REQUEST_METHOD".into(), "PUT".into()),
                ("HTTP_X_ADMIN".into(), "yes".into()),
            ],
        ]);
        assert_eq!(static_env.ignored(), ["REQUEST_METHOD", "HTTP_X_ADMIN"]);
        let env = env_for("GET", "/", &[], None, &static_env);
        assert_eq!(env["DOCUMENT_ROOT"], "/srv");
        assert_eq!(env["A"], "flag");
        assert_eq!(env["REQUEST_METHOD"], "GET");
        assert!(!env.contains_key("HTTP_X_ADMIN"));
    }

    #[test]
    fn paths_that_cannot_be_environment_text_are_rejected() {
        let method = Method::GET;
        let headers = HeaderMap::new();
        let not_utf8: Uri = "/%ff".parse().unwrap();
        assert_eq!(decoded_path(&not_utf8), Err(RequestError::PathNotUtf8));
        let with_nul: Uri = "/a%00b".parse().unwrap();
        let path = decoded_path(&with_nul).unwrap();
        let request = bodiless(&method, &with_nul, &path, &headers, None);
        assert_eq!(
            request.env(&StaticEnv::default()),
            Err(RequestError::NulByte)
        );
    }
}
