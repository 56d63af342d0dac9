//! Script routing for interpreters that serve a document root (php-cgi): which file under the
//! root a request runs, and how its path splits into `SCRIPT_NAME` and `PATH_INFO` — the rules
//! Apache's `AcceptPathInfo` and nginx's `try_files … /index.php` give PHP apps.

use super::url_path;

/// What a guest path names, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// Read-only view of the guest's filesystem (its mounts), consulted per request so that live
/// edits take effect at once.
pub trait DocumentTree {
    /// What `guest_path` (absolute, normalised) names, if anything.
    fn entry_kind(&self, guest_path: &str) -> Option<EntryKind>;
}

/// The routing rules of one command, from its `[command.annotations.wcgi]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRouting {
    /// Guest directory the scripts live in, without a trailing slash (`/app`).
    pub document_root: String,
    /// File extensions (without the dot) that are scripts: `["php"]`.
    pub script_extensions: Vec<String>,
    /// Files tried, in order, when a request names a directory: `["index.php"]`.
    pub index_files: Vec<String>,
    /// The script that serves every path naming nothing under the root (`/index.php`).
    pub front_controller: Option<String>,
}

/// The script a request runs, and the CGI variables that describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRoute {
    /// The script's URL path below the root (`/blog/index.php`).
    pub script_name: String,
    /// The decoded rest of the path after the script (`/extra`), often empty.
    pub path_info: String,
    /// The script's guest path (`/app/blog/index.php`).
    pub script_filename: String,
    /// The document root as a guest path (`/app`).
    pub document_root: String,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    Script(ScriptRoute),
    /// The path names a directory but lacks the trailing slash: redirect, as Apache's mod_dir
    /// does, so that relative links inside the directory's page resolve.
    AddTrailingSlash,
    /// The path names a file that is not a script; it is never run, nor shown as source.
    NotAScript,
    NotFound,
}

impl ScriptRouting {
    /// Routes a decoded request path (`/x.php/extra`).
    pub fn route(&self, decoded_path: &str, tree: &impl DocumentTree) -> Routed {
        let Some(segments) = url_path::segments(decoded_path) else {
            return Routed::NotFound;
        };
        let normalised = url_path::join(&segments);
        let trailing_slash = decoded_path.ends_with('/') && !segments.is_empty();

        // The first path prefix that ends in a script file runs; the rest is PATH_INFO.
        let mut prefix_len = 0;
        for segment in &segments {
            prefix_len += 1 + segment.len();
            let candidate = &normalised[..prefix_len];
            if self.is_script(segment)
                && tree.entry_kind(&self.guest_path(candidate)) == Some(EntryKind::File)
            {
                let mut path_info = normalised[prefix_len..].to_string();
                if trailing_slash && prefix_len < normalised.len() {
                    path_info.push('/');
                }
                return Routed::Script(self.script(candidate, path_info));
            }
        }

        match tree.entry_kind(&self.guest_path(&normalised)) {
            Some(EntryKind::Directory) => {
                if !segments.is_empty() && !trailing_slash {
                    return Routed::AddTrailingSlash;
                }
                let index = self.index_files.iter().find_map(|name| {
                    let script_name = format!("{normalised}/{name}");
                    (tree.entry_kind(&self.guest_path(&script_name)) == Some(EntryKind::File))
                        .then_some(script_name)
                });
                match index {
                    Some(script_name) => Routed::Script(self.script(&script_name, String::new())),
                    None => self.front_controller(tree),
                }
            }
            Some(EntryKind::File) => Routed::NotAScript,
            None => self.front_controller(tree),
        }
    }

    fn front_controller(&self, tree: &impl DocumentTree) -> Routed {
        match &self.front_controller {
            Some(script_name)
                if tree.entry_kind(&self.guest_path(script_name)) == Some(EntryKind::File) =>
            {
                Routed::Script(self.script(script_name, String::new()))
            }
            _ => Routed::NotFound,
        }
    }

    fn is_script(&self, file_name: &str) -> bool {
        file_name.rsplit_once('.').is_some_and(|(stem, extension)| {
            !stem.is_empty() && self.script_extensions.iter().any(|e| e == extension)
        })
    }

    fn guest_path(&self, url_path: &str) -> String {
        format!("{}{url_path}", self.document_root)
    }

    fn script(&self, script_name: &str, path_info: String) -> ScriptRoute {
        ScriptRoute {
            script_name: script_name.to_string(),
            path_info,
            script_filename: self.guest_path(script_name),
            document_root: self.document_root.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Tree(BTreeMap<&'static str, EntryKind>);

    impl DocumentTree for Tree {
        fn entry_kind(&self, guest_path: &str) -> Option<EntryKind> {
            self.0.get(guest_path).copied()
        }
    }

    fn site() -> Tree {
        use EntryKind::*;
        Tree(BTreeMap::from([
            ("/app", Directory),
            ("/app/index.php", File),
            ("/app/x.php", File),
            ("/app/style.css", File),
            ("/app/blog", Directory),
            ("/app/blog/index.php", File),
            ("/app/empty", Directory),
            ("/app/dir.php", Directory),
            ("/app/dir.php/real.php", File),
        ]))
    }

    fn routing(front_controller: Option<&str>) -> ScriptRouting {
        ScriptRouting {
            document_root: "/app".into(),
            script_extensions: vec!["php".into()],
            index_files: vec!["index.php".into()],
            front_controller: front_controller.map(String::from),
        }
    }

    fn script(script_name: &str, path_info: &str) -> Routed {
        Routed::Script(ScriptRoute {
            script_name: script_name.into(),
            path_info: path_info.into(),
            script_filename: format!("/app{script_name}"),
            document_root: "/app".into(),
        })
    }

    #[test]
    fn the_root_runs_its_index() {
        assert_eq!(routing(None).route("/", &site()), script("/index.php", ""));
    }

    #[test]
    fn a_script_runs_with_the_rest_as_path_info() {
        let routing = routing(None);
        assert_eq!(routing.route("/x.php", &site()), script("/x.php", ""));
        assert_eq!(
            routing.route("/x.php/extra/more", &site()),
            script("/x.php", "/extra/more")
        );
        assert_eq!(
            routing.route("/x.php/extra/", &site()),
            script("/x.php", "/extra/")
        );
        assert_eq!(routing.route("//x.php", &site()), script("/x.php", ""));
    }

    #[test]
    fn a_directory_named_like_a_script_is_walked_through() {
        assert_eq!(
            routing(None).route("/dir.php/real.php/a", &site()),
            script("/dir.php/real.php", "/a")
        );
    }

    #[test]
    fn directories_get_their_index_after_a_trailing_slash() {
        let routing = routing(None);
        assert_eq!(
            routing.route("/blog/", &site()),
            script("/blog/index.php", "")
        );
        assert_eq!(routing.route("/blog", &site()), Routed::AddTrailingSlash);
        assert_eq!(routing.route("/empty/", &site()), Routed::NotFound);
    }

    #[test]
    fn unknown_paths_go_to_the_front_controller_when_there_is_one() {
        assert_eq!(routing(None).route("/posts/42", &site()), Routed::NotFound);
        let routing = routing(Some("/index.php"));
        assert_eq!(
            routing.route("/posts/42", &site()),
            script("/index.php", "")
        );
        assert_eq!(routing.route("/empty/", &site()), script("/index.php", ""));
        assert_eq!(
            routing.route("/gone.php", &site()),
            script("/index.php", "")
        );
    }

    #[test]
    fn a_missing_front_controller_is_not_found() {
        assert_eq!(
            routing(Some("/missing.php")).route("/posts/42", &site()),
            Routed::NotFound
        );
    }

    #[test]
    fn files_that_are_not_scripts_are_never_run() {
        let routing = routing(Some("/index.php"));
        assert_eq!(routing.route("/style.css", &site()), Routed::NotAScript);
        assert_eq!(
            routing.route("/style.css/x.php", &site()),
            script("/index.php", "")
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        let routing = routing(Some("/index.php"));
        assert_eq!(routing.route("/../etc/x.php", &site()), Routed::NotFound);
        assert_eq!(
            routing.route("/blog/./index.php", &site()),
            Routed::NotFound
        );
    }

    #[test]
    fn only_named_extensions_are_scripts() {
        let routing = routing(None);
        assert!(routing.is_script("a.php"));
        assert!(!routing.is_script(".php"));
        assert!(!routing.is_script("a.php.txt"));
        assert!(!routing.is_script("a.PHP"));
    }
}
