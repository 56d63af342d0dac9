//! What a user may type to name a package that is not a local path.

use std::fmt;

use anyhow::bail;
use semver::VersionReq;
use url::Url;

/// A package in a registry, a release by hash, or a container at a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `[REGISTRY:]namespace/name[@requirement]`.
    Named {
        registry: Option<String>,
        name: String,
        requirement: VersionReq,
    },
    /// `sha256:<64 hex digits>`: a release by the hash of its container.
    Hash(String),
    /// An `http(s)://` URL of a `.webc`.
    Url(Url),
}

impl Reference {
    /// Parses a reference; `None` when it does not look like one at all.
    pub fn parse(raw: &str) -> anyhow::Result<Option<Reference>> {
        if let Some(hex) = raw.strip_prefix("sha256:") {
            let hex = hex.to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("`{raw}` is not a package hash: expected sha256: and 64 hex digits");
            }
            return Ok(Some(Reference::Hash(hex)));
        }
        if raw.starts_with("https://") || raw.starts_with("http://") {
            let url = Url::parse(raw)
                .map_err(|error| anyhow::anyhow!("`{raw}` is not a valid URL: {error}"))?;
            return Ok(Some(Reference::Url(url)));
        }
        let (name_part, requirement) = match raw.split_once('@') {
            Some((name, requirement)) => (name, Some(requirement)),
            None => (raw, None),
        };
        let (registry, name) = match name_part.rsplit_once(':') {
            Some((registry, name)) if name.contains('/') && !registry.is_empty() => {
                (Some(registry.to_string()), name)
            }
            _ => (None, name_part),
        };
        let mut parts = name.split('/');
        let valid = |part: Option<&str>| {
            part.is_some_and(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
        };
        if !(valid(parts.next()) && valid(parts.next()) && parts.next().is_none()) {
            return Ok(None);
        }
        let requirement = match requirement {
            None | Some("latest") => VersionReq::STAR,
            Some("") => {
                bail!("`{raw}`: nothing after `@`; give a version such as `@1.2.0` or `@^1`")
            }
            Some(text) => match VersionReq::parse(text) {
                Ok(requirement) => requirement,
                Err(_) => bail!(
                    "`{raw}`: `{text}` is not a version or version range; named tags are not \
                     supported, use a version such as `@1.2.0`, `@=1.2.0` or `@^1`"
                ),
            },
        };
        Ok(Some(Reference::Named {
            registry,
            name: name.to_string(),
            requirement,
        }))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Named {
                name, requirement, ..
            } if *requirement == VersionReq::STAR => write!(f, "{name}"),
            Reference::Named {
                name, requirement, ..
            } => write!(f, "{name}@{requirement}"),
            Reference::Hash(hex) => write!(f, "sha256:{hex}"),
            Reference::Url(url) => write!(f, "{url}"),
        }
    }
}

/// The GraphQL endpoint for a `--registry` value, normalised as Wasmer's CLI does.
pub fn registry_endpoint(registry: Option<&str>) -> anyhow::Result<Url> {
    let raw = registry.unwrap_or("https://registry.wasmer.io/graphql");
    let text = if raw.contains("://") {
        raw.to_string()
    } else if raw.contains("localhost") {
        format!("http://{raw}/graphql")
    } else {
        format!("https://registry.{raw}/graphql")
    };
    let mut url = Url::parse(&text)
        .map_err(|error| anyhow::anyhow!("registry `{raw}` is not a valid URL: {error}"))?;
    if url.path() == "/" {
        url.set_path("/graphql");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_registries_parse() {
        let parsed = Reference::parse("myuser/pkg").unwrap().unwrap();
        assert_eq!(
            parsed,
            Reference::Named {
                registry: None,
                name: "myuser/pkg".into(),
                requirement: VersionReq::STAR
            }
        );
        let Some(Reference::Named {
            registry,
            requirement,
            ..
        }) = Reference::parse("localhost:8080:ns/pkg@1.2").unwrap()
        else {
            panic!()
        };
        assert_eq!(registry.as_deref(), Some("localhost:8080"));
        assert!(requirement.matches(&"1.9.0".parse().unwrap()));
        assert!(!requirement.matches(&"2.0.0".parse().unwrap()));
        assert!(Reference::parse("ns/pkg@beta").is_err());
        assert_eq!(Reference::parse("./dir").unwrap(), None);
        assert_eq!(Reference::parse("a/b/c").unwrap(), None);
    }

    #[test]
    fn hashes_and_urls_parse() {
        let hex = "ab".repeat(32);
        assert_eq!(
            Reference::parse(&format!("sha256:{hex}")).unwrap(),
            Some(Reference::Hash(hex))
        );
        assert!(Reference::parse("sha256:abc").is_err());
        assert!(matches!(
            Reference::parse("https://x.test/p.webc").unwrap(),
            Some(Reference::Url(_))
        ));
    }

    #[test]
    fn registry_endpoints_are_normalised_like_wasmer() {
        let endpoint = |raw| registry_endpoint(raw).unwrap().to_string();
        assert_eq!(endpoint(None), "https://registry.wasmer.io/graphql");
        assert_eq!(
            endpoint(Some("wasmer.io")),
            "https://registry.wasmer.io/graphql"
        );
        assert_eq!(
            endpoint(Some("localhost:8080")),
            "http://localhost:8080/graphql"
        );
        assert_eq!(
            endpoint(Some("http://127.0.0.1:9/")),
            "http://127.0.0.1:9/graphql"
        );
        assert_eq!(
            endpoint(Some("http://127.0.0.1:9/api")),
            "http://127.0.0.1:9/api"
        );
    }
}
