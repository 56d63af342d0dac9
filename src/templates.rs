//! `wcgi new`: project templates, embedded in the binary so an installed `wcgi` needs no
//! source tree. Files under `templates/NAME/` are written with `{{name}}`-style placeholders
//! filled in; `gitignore` becomes `.gitignore`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::NewArgs;
use crate::package::{self, ModuleSource, RegistrySettings};

struct Template {
    name: &'static str,
    description: &'static str,
    /// (path in the project, contents, executable)
    files: &'static [(&'static str, &'static str, bool)],
    /// What to run after creating the project, in its directory.
    next_steps: &'static str,
    /// For interpreted languages: how `--interpreter FILE` replaces the registry dependency.
    local_interpreter: Option<LocalInterpreter>,
}

/// A template variant whose interpreter is a module file in the project.
struct LocalInterpreter {
    /// The manifest to write instead of the one depending on the registry package.
    manifest: &'static str,
    /// Where the module is copied in the project.
    file_name: &'static str,
    /// The script in the wcgi repository that builds or fetches the interpreter.
    build_script: &'static str,
}

macro_rules! template_file {
    ($template:literal, $source:literal, $target:literal) => {
        (
            $target,
            include_str!(concat!("../templates/", $template, "/", $source)),
            false,
        )
    };
    ($template:literal, $source:literal, $target:literal, executable) => {
        (
            $target,
            include_str!(concat!("../templates/", $template, "/", $source)),
            true,
        )
    };
}

const TEMPLATES: &[Template] = &[
    Template {
        name: "rust",
        description: "a CGI app in plain Rust (no dependencies, no copyleft)",
        files: &[
            template_file!("rust", "Cargo.toml", "Cargo.toml"),
            template_file!("rust", "src/main.rs", "src/main.rs"),
            template_file!("rust", "wasmer.toml", "wasmer.toml"),
            template_file!("rust", "README.md", "README.md"),
            template_file!("rust", "gitignore", ".gitignore"),
        ],
        next_steps: "cargo build --release --target wasm32-wasip1 && wcgi run .",
        local_interpreter: None,
    },
    Template {
        name: "c",
        description: "a CGI app in C, built with Debian's clang and wasi-libc",
        files: &[
            template_file!("c", "main.c", "main.c"),
            template_file!("c", "build.sh", "build.sh", executable),
            template_file!("c", "wasmer.toml", "wasmer.toml"),
            template_file!("c", "README.md", "README.md"),
            template_file!("c", "gitignore", ".gitignore"),
        ],
        next_steps: "./build.sh && wcgi run .",
        local_interpreter: None,
    },
    Template {
        name: "python",
        description: "a CGI app in Python 3.11 (interpreter from the registry, or --interpreter FILE)",
        files: &[
            template_file!("python", "app/index.py", "app/index.py"),
            template_file!("python", "wasmer.toml", "wasmer.toml"),
            template_file!("python", "README.md", "README.md"),
            template_file!("python", "gitignore", ".gitignore"),
        ],
        next_steps: "mkdir -p data && wcgi run . --mapdir /app:./app --mapdir /data:./data",
        local_interpreter: Some(LocalInterpreter {
            manifest: include_str!("../templates/python/wasmer.local.toml"),
            file_name: "python.wasm",
            build_script: "interpreters/python/build.sh",
        }),
    },
    Template {
        name: "php",
        description: "a PHP 8.2 site: front-controller routing, php.ini, sessions, SQLite \
                      (php-cgi from the registry, or --interpreter FILE)",
        files: &[
            template_file!("php", "app/index.php", "app/index.php"),
            template_file!("php", "app/visits.php", "app/visits.php"),
            template_file!("php", "php/php.ini", "php/php.ini"),
            template_file!("php", "wasmer.toml", "wasmer.toml"),
            template_file!("php", "README.md", "README.md"),
            template_file!("php", "gitignore", ".gitignore"),
        ],
        next_steps: "mkdir -p data/sessions && wcgi run . --mapdir /app:./app --mapdir /data:./data",
        local_interpreter: Some(LocalInterpreter {
            manifest: include_str!("../templates/php/wasmer.local.toml"),
            file_name: "php-cgi.wasm",
            build_script: "interpreters/php/build.sh",
        }),
    },
];

pub fn new(args: &NewArgs) -> anyhow::Result<()> {
    if args.list {
        let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for template in TEMPLATES {
            println!("{:width$}  {}", template.name, template.description);
        }
        return Ok(());
    }
    let known = || {
        TEMPLATES
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(requested) = args.template.as_deref() else {
        bail!(
            "choose a template with --template NAME (templates: {})",
            known()
        );
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.name == requested) else {
        bail!("unknown template \"{requested}\" (templates: {})", known());
    };

    let interpreter = match (&args.interpreter, &template.local_interpreter) {
        (None, _) => None,
        (Some(given), Some(slot)) => {
            // An interpreter package directory (what interpreters/*/ scripts print) holds the
            // module under the same file name the project uses.
            let file = if given.is_dir() {
                given.join(slot.file_name)
            } else {
                given.clone()
            };
            Some((read_interpreter(&file)?, slot))
        }
        (Some(_), None) => bail!(
            "the {} template has no interpreter to replace",
            template.name
        ),
    };
    let dir = &args.dir;
    if !args.force && is_non_empty_dir(dir) {
        bail!(
            "{} is not empty; choose a new directory or pass --force to write into it",
            dir.display()
        );
    }
    let name = project_name(dir)?;
    for (relative, contents, executable) in template.files {
        let contents = match (&interpreter, *relative) {
            (Some((_, slot)), "wasmer.toml") => slot.manifest,
            _ => contents,
        };
        write_file(&dir.join(relative), &fill_in(contents, &name), *executable)?;
    }
    if let Some((module, slot)) = &interpreter {
        let path = dir.join(slot.file_name);
        std::fs::write(&path, module)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "Created a {} project \"{name}\" in {}",
        template.name,
        dir.display()
    );
    println!("Next: cd {} && {}", shell_quote(dir), template.next_steps);
    if let (None, Some(slot)) = (&interpreter, &template.local_interpreter)
        && let Err(error) = fetch_dependencies(dir, &args.source.settings())
    {
        // The project is written either way; this says how to get it running.
        eprintln!(
            "warning: {error:#}. The project is written; to serve it, use --registry with a \
             registry that has this package, or make the project again with --interpreter DIR, \
             DIR being what {} in the wcgi repository prints",
            slot.build_script
        );
    }
    Ok(())
}

/// Fetches what the new project's commands depend on into the cache, so that `wcgi run`
/// finds it (also offline), and so that a dependency the registry lacks is said now.
fn fetch_dependencies(dir: &Path, settings: &RegistrySettings) -> anyhow::Result<()> {
    let package = package::resolve_directory(dir)?;
    for command in &package.commands {
        if let ModuleSource::Dependency { .. } = command.module {
            command.load_module(settings)?;
        }
    }
    Ok(())
}

/// An interpreter module given with `--interpreter`: must be a WebAssembly module.
fn read_interpreter(file: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read --interpreter {}", file.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!(
            "--interpreter {} is not a WebAssembly module (.wasm)",
            file.display()
        );
    }
    Ok(bytes)
}

fn is_non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// The project's name from its directory: lower-case letters, digits and dashes, starting
/// with a letter (it names the Cargo package and the wasmer.toml command).
fn project_name(dir: &Path) -> anyhow::Result<String> {
    let absolute =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let base = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("site-{name}").trim_end_matches('-').to_string();
    }
    Ok(name)
}

fn fill_in(contents: &str, name: &str) -> String {
    contents
        .replace("{{crate_name}}", name)
        .replace("{{namespace}}", "local")
        .replace("{{name}}", name)
}

fn write_file(path: &PathBuf, contents: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_safe_identifiers() {
        assert_eq!(project_name(Path::new("/tmp/My Site")).unwrap(), "my-site");
        assert_eq!(project_name(Path::new("/tmp/2024")).unwrap(), "site-2024");
        assert_eq!(project_name(Path::new("/tmp/blog_v2")).unwrap(), "blog-v2");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let manifests = TEMPLATES.iter().flat_map(|template| {
            let local = template.local_interpreter.as_ref().map(|l| l.manifest);
            template
                .files
                .iter()
                .map(|(path, contents, _)| (*path, *contents))
                .chain(local.map(|manifest| ("wasmer.toml (with --interpreter)", manifest)))
        });
        for (path, contents) in manifests {
            let filled = fill_in(contents, "demo-site");
            assert!(!filled.contains("{{"), "{path}: {filled}");
        }
        for template in TEMPLATES {
            let manifest = template
                .files
                .iter()
                .find(|(path, _, _)| *path == "wasmer.toml")
                .map(|(_, contents, _)| fill_in(contents, "demo-site"))
                .expect("every template has a wasmer.toml");
            assert!(
                manifest.contains("name = \"local/demo-site\""),
                "{}: {manifest}",
                template.name
            );
            let readme = template
                .files
                .iter()
                .find(|(path, _, _)| *path == "README.md")
                .map(|(_, contents, _)| fill_in(contents, "demo-site"))
                .expect("every template has a README.md");
            assert!(
                readme.starts_with("# demo-site\n"),
                "{}: {readme}",
                template.name
            );
        }
    }
}
