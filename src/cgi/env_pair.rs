//! `KEY=VALUE` entries for the guest environment, one rule for every place they come from
//! (`--env` and the annotation `env`), so a bad entry is refused at start-up, never per request.

/// Splits `KEY=VALUE` at the first `=`. The name must not be empty, and neither side may
/// hold a NUL byte (an environment variable cannot carry one).
pub fn parse_env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some(("", _)) => Err(format!("the variable name before `=` is empty in `{raw}`")),
        Some((key, value)) if key.contains('\0') || value.contains('\0') => Err(format!(
            "environment variables cannot contain NUL bytes: {raw:?}"
        )),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env_pair("A=").unwrap(), ("A".into(), String::new()));
        assert_eq!(
            parse_env_pair("A").unwrap_err(),
            "expected KEY=VALUE, got `A`"
        );
        assert_eq!(
            parse_env_pair("=x").unwrap_err(),
            "the variable name before `=` is empty in `=x`"
        );
    }

    #[test]
    fn nul_bytes_are_refused_on_either_side() {
        for raw in ["A=b\0c", "A\0=b"] {
            assert!(
                parse_env_pair(raw)
                    .unwrap_err()
                    .contains("cannot contain NUL bytes"),
                "{raw:?}"
            );
        }
    }
}
