//! Decoded URL paths as segments: the one place that says which paths could climb out of a
//! directory, for script routing, static files and static prefixes alike.

/// The segments of a decoded URL path, empty ones (`//`, a leading or trailing `/`) left
/// out; `None` if any segment is `.` or `..`, which no route or file lookup follows.
pub fn segments(path: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    Some(segments)
}

/// `["a", "b"]` → `/a/b`; no segments → the empty string (the root as a prefix).
pub fn join(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_segments_go_and_dot_segments_refuse_the_path() {
        assert_eq!(segments("//a///b/"), Some(vec!["a", "b"]));
        assert_eq!(segments("/"), Some(vec![]));
        assert_eq!(segments("/a/../b"), None);
        assert_eq!(segments("/a/./b"), None);
        assert_eq!(segments("/a/...b/.c"), Some(vec!["a", "...b", ".c"]));
    }

    #[test]
    fn joined_segments_are_an_absolute_path_or_nothing() {
        assert_eq!(join(&["a", "b"]), "/a/b");
        assert_eq!(join(&[]), "");
    }
}
