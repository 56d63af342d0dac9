//! Files the host serves itself, straight from a directory and without starting an instance:
//! which request path names which file, refusing anything that could leak what the guest
//! should keep (scripts as source, hidden files, paths leading out of the directory).

use std::path::{Path, PathBuf};

use crate::cgi::url_path;
use anyhow::{Context, bail};

/// Extensions never served as files, whatever the command's configuration says: PHP source
/// holds database passwords and salts (`wp-config.php`).
const ALWAYS_SCRIPTS: [&str; 3] = ["php", "phtml", "phar"];

/// The one hidden directory served: ACME challenges and other well-known URIs (RFC 8615).
const WELL_KNOWN: &str = ".well-known";

/// A URL prefix served from a host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticDir {
    /// Normalised URL path: `""` for the whole site, else `/assets` (no trailing slash).
    pub url_prefix: String,
    /// Canonical host directory.
    pub dir: PathBuf,
}

impl StaticDir {
    /// Checks that `dir` is a directory and takes its canonical path. `origin` names the
    /// setting in errors.
    pub fn open(url_prefix: &str, dir: &Path, origin: &str) -> anyhow::Result<Self> {
        let url_prefix =
            normalise_prefix(url_prefix).map_err(|error| anyhow::anyhow!("{origin}: {error}"))?;
        if !dir.is_dir() {
            bail!(
                "{origin}: {} is not a directory; static files need an existing host directory",
                dir.display()
            );
        }
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("{origin}: cannot open {}", dir.display()))?;
        Ok(StaticDir { url_prefix, dir })
    }
}

/// `/assets/` → `/assets`, `/` → ``; a prefix must be an absolute URL path.
pub fn normalise_prefix(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!(
            "the URL path {raw:?} must start with `/`, e.g. `/assets`"
        ));
    }
    let segments = url_path::segments(raw)
        .ok_or_else(|| format!("the URL path {raw:?} may not contain `.` or `..`"))?;
    Ok(url_path::join(&segments))
}

/// A file found for a request.
#[derive(Debug)]
pub struct StaticFile {
    /// Canonical host path (symlinks resolved, checked to be inside its directory).
    pub path: PathBuf,
    /// The name the request used, which decides the Content-Type.
    pub requested_name: String,
    pub metadata: std::fs::Metadata,
}

/// Every static directory of the served command.
#[derive(Debug, Clone, Default)]
pub struct StaticFiles {
    /// Longest prefix first, so `/assets/x` prefers `/assets` over `/`.
    dirs: Vec<StaticDir>,
    /// Lower-case extensions of scripts, never served as files.
    scripts: Vec<String>,
    /// Files unpacked from a container for serving; removed when the server stops.
    _unpacked: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl StaticFiles {
    /// `script_extensions` are the command's scripts; PHP's extensions are always added.
    pub fn new(mut dirs: Vec<StaticDir>, script_extensions: &[String]) -> Self {
        dirs.sort_by_key(|dir| std::cmp::Reverse(dir.url_prefix.len()));
        let mut scripts: Vec<String> = ALWAYS_SCRIPTS.iter().map(|e| e.to_string()).collect();
        scripts.extend(script_extensions.iter().map(|e| e.to_ascii_lowercase()));
        scripts.sort();
        scripts.dedup();
        StaticFiles {
            dirs,
            scripts,
            _unpacked: None,
        }
    }

    /// Keeps `unpacked` (where some of the directories are) for as long as these files are
    /// served.
    pub fn keeping(mut self, unpacked: Option<tempfile::TempDir>) -> Self {
        self._unpacked = unpacked.map(std::sync::Arc::new);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    pub fn dirs(&self) -> &[StaticDir] {
        &self.dirs
    }

    /// The host file a decoded request path names, if the host may serve it. `None` means the
    /// request goes to the command: no such file, a directory, a script, a hidden file, or a
    /// path that would leave the directory.
    pub fn lookup(&self, decoded_path: &str) -> Option<StaticFile> {
        let (dir, rest) = self.dirs.iter().find_map(|dir| {
            let rest = decoded_path.strip_prefix(dir.url_prefix.as_str())?;
            (rest.starts_with('/')).then_some((dir, rest))
        })?;
        // `.` and `..` are refused here; other hidden names by `may_serve_segment`.
        let segments = url_path::segments(rest)?;
        let file_name = *segments.last()?;
        if !segments
            .iter()
            .all(|segment| self.may_serve_segment(segment))
            || self.is_script(file_name)
            || rest.ends_with('/')
        {
            return None;
        }
        let candidate = segments
            .iter()
            .fold(dir.dir.clone(), |path, segment| path.join(segment));
        // Symlinks are followed only while they stay inside the directory.
        let path = std::fs::canonicalize(&candidate).ok()?;
        if !path.starts_with(&dir.dir) {
            tracing::info!(
                "{decoded_path}: {} leads out of {}; not served",
                candidate.display(),
                dir.dir.display()
            );
            return None;
        }
        let metadata = std::fs::metadata(&path).ok()?;
        metadata.is_file().then(|| StaticFile {
            path,
            requested_name: file_name.to_string(),
            metadata,
        })
    }

    /// `..` and `.` never leave the directory; hidden names (`.git`, `.env`, `.htaccess`) stay
    /// private, as web servers keep them by convention.
    fn may_serve_segment(&self, segment: &str) -> bool {
        !segment.starts_with('.') || segment == WELL_KNOWN
    }

    /// Scripts and their copies: an editor's `wp-config.php~` or a `config.php.bak` holds the
    /// same secrets. Compared without case: `INDEX.PHP` is still PHP source.
    fn is_script(&self, file_name: &str) -> bool {
        file_name.split('.').skip(1).any(|part| {
            let extension = part.trim_end_matches('~');
            self.scripts
                .iter()
                .any(|script| script.eq_ignore_ascii_case(extension))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Site {
        _root: tempfile::TempDir,
        files: StaticFiles,
        outside: PathBuf,
    }

    fn site() -> Site {
        let root = tempfile::tempdir().unwrap();
        let public = root.path().join("public");
        std::fs::create_dir_all(public.join("css")).unwrap();
        std::fs::create_dir_all(public.join(".git")).unwrap();
        std::fs::create_dir_all(public.join(".well-known")).unwrap();
        std::fs::write(public.join("css/site.css"), "body{}").unwrap();
        std::fs::write(public.join("index.php"), "<?php secret();").unwrap();
        std::fs::write(public.join("index.php~"), "<?php secret();").unwrap();
        std::fs::write(public.join("index.php.bak"), "<?php secret();").unwrap();
        std::fs::write(public.join("phpinfo.txt"), "not a script").unwrap();
        std::fs::write(public.join("tool.py"), "print()").unwrap();
        std::fs::write(public.join(".git/config"), "[core]").unwrap();
        std::fs::write(public.join(".well-known/security.txt"), "x").unwrap();
        let outside = root.path().join("secret.txt");
        std::fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, public.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(public.join("css/site.css"), public.join("alias.css")).unwrap();
        let dir = StaticDir::open("/", &public, "test").unwrap();
        let files = StaticFiles::new(vec![dir], &["py".to_string()]);
        Site {
            _root: root,
            files,
            outside,
        }
    }

    fn served(site: &Site, path: &str) -> Option<String> {
        site.files
            .lookup(path)
            .map(|file| std::fs::read_to_string(file.path).unwrap())
    }

    #[test]
    fn files_are_found_under_their_prefix() {
        let site = site();
        assert_eq!(served(&site, "/css/site.css").as_deref(), Some("body{}"));
        assert_eq!(served(&site, "//css//site.css").as_deref(), Some("body{}"));
        assert_eq!(served(&site, "/alias.css").as_deref(), Some("body{}"));
        assert_eq!(
            served(&site, "/phpinfo.txt").as_deref(),
            Some("not a script")
        );
        assert_eq!(
            served(&site, "/.well-known/security.txt").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn misses_directories_and_trailing_slashes_go_to_the_command() {
        let site = site();
        assert!(served(&site, "/").is_none());
        assert!(served(&site, "/css").is_none());
        assert!(served(&site, "/css/").is_none());
        assert!(served(&site, "/css/site.css/").is_none());
        assert!(served(&site, "/nothing.css").is_none());
    }

    #[test]
    fn scripts_and_hidden_files_are_never_served() {
        let site = site();
        for path in [
            "/index.php",
            "/INDEX.PHP",
            "/index.php~",
            "/index.php.bak",
            "/tool.py",
            "/.git/config",
        ] {
            assert!(served(&site, path).is_none(), "{path} was served");
        }
    }

    #[test]
    fn nothing_outside_the_directory_is_reachable() {
        let site = site();
        assert!(site.outside.exists());
        for path in ["/../secret.txt", "/css/../../secret.txt", "/leak.txt"] {
            assert!(served(&site, path).is_none(), "{path} was served");
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), "root").unwrap();
        let assets = root.path().join("assets");
        std::fs::create_dir(&assets).unwrap();
        std::fs::write(assets.join("a.txt"), "assets").unwrap();
        let files = StaticFiles::new(
            vec![
                StaticDir::open("/", root.path(), "t").unwrap(),
                StaticDir::open("/static/", &assets, "t").unwrap(),
            ],
            &[],
        );
        let read = |path| std::fs::read_to_string(files.lookup(path).unwrap().path).unwrap();
        assert_eq!(read("/static/a.txt"), "assets");
        assert_eq!(read("/a.txt"), "root");
        assert!(files.lookup("/staticx/a.txt").is_none());
    }

    #[test]
    fn prefixes_are_normalised_or_refused() {
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("/assets/").unwrap(), "/assets");
        assert!(normalise_prefix("assets").is_err());
        assert!(normalise_prefix("/a/../b").is_err());
    }
}
