//! Config sources → YAML documents, each remembering its file and line numbers.
//!
//! Owns: reading `--config` paths (files and directories, including Kubernetes ConfigMap
//! mounts with their `..data` symlinks), splitting `---` documents, YAML syntax errors with
//! `FILE:LINE`, and finding the line of an attribute in a document's text.
//! Must not: interpret resources (that is `raw`), touch sockets or the runtime.

use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::ConfigError;

/// One YAML document of a config source.
#[derive(Debug, Clone)]
pub(crate) struct SourceDoc {
    /// The file it came from (or the inline name).
    pub file: PathBuf,
    /// 1-based line of the document's first content line.
    pub line: usize,
    /// 1-based line where `text` starts in the file.
    pub start: usize,
    /// The document's text (line `start` of the file is its first line).
    pub text: String,
    /// The parsed document.
    pub value: Value,
}

impl SourceDoc {
    /// The line of the attribute at `keys` (a path of nested keys, e.g. `["spec", "port"]`
    /// or just `["port"]`), found by scanning the text; the document's first line when not found.
    pub(crate) fn key_line(&self, keys: &[&str]) -> usize {
        let mut from = 0usize;
        let mut found = None;
        let lines: Vec<&str> = self.text.lines().collect();
        for key in keys {
            match lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| line_has_key(l, key))
            {
                Some((i, _)) => {
                    found = Some(i);
                    from = i + 1;
                }
                None => break,
            }
        }
        found.map_or(self.line, |i| self.start + i)
    }
}

/// True when `line` opens the mapping key `key` (`key:`, `- key:`, `"key":`).
fn line_has_key(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map_or(t, str::trim_start);
    let rest = if let Some(r) = t.strip_prefix('"').and_then(|r| r.strip_prefix(key)) {
        r.strip_prefix('"')
    } else if let Some(r) = t.strip_prefix('\'').and_then(|r| r.strip_prefix(key)) {
        r.strip_prefix('\'')
    } else {
        t.strip_prefix(key)
    };
    rest.is_some_and(|r| r.trim_start().starts_with(':'))
}

#[cfg(test)]
/// Reads every path: files directly, directories as their sorted `*.yaml`/`*.yml` files.
pub(crate) fn read_paths(paths: &[PathBuf]) -> (Vec<SourceDoc>, Vec<ConfigError>) {
    let (texts, mut errors) = read_texts(paths);
    let mut docs = Vec::new();
    for (file, text) in &texts {
        let (d, e) = parse_text(file, text);
        docs.extend(d);
        errors.extend(e);
    }
    (docs, errors)
}

/// The text of every file under `paths` (files directly, directories as their sorted
/// `*.yaml`/`*.yml` files), in reading order; unreadable ones are errors naming them.
pub(crate) fn read_texts(paths: &[PathBuf]) -> (Vec<(PathBuf, String)>, Vec<ConfigError>) {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = match fs::metadata(path) {
            Ok(m) if m.is_dir() => match list_dir(path) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(file_error(path, format!("cannot read directory: {e}")));
                    continue;
                }
            },
            Ok(_) => vec![path.clone()],
            Err(e) => {
                errors.push(file_error(path, format!("cannot read: {e}")));
                continue;
            }
        };
        for file in files {
            match fs::read_to_string(&file) {
                Ok(text) => texts.push((file, text)),
                Err(e) => errors.push(file_error(&file, format!("cannot read: {e}"))),
            }
        }
    }
    (texts, errors)
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError::error(path, 1, "File", "-", message)
}

/// The `*.yaml`/`*.yml` files of a directory, sorted by name. Names starting with `.`
/// (hidden files and the `..data`/`..2024_…` entries of a ConfigMap mount) are skipped;
/// symlinks are followed, so `ssh.yaml -> ..data/ssh.yaml` is read once.
pub(crate) fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let path = entry.path();
        // `fs::metadata` follows symlinks; dangling links and subdirectories are skipped.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Splits `text` into documents at `---` lines and parses each; empty documents are dropped.
pub(crate) fn parse_text(file: &Path, text: &str) -> (Vec<SourceDoc>, Vec<ConfigError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (start, chunk) in split_documents(text) {
        let first = chunk.lines().position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        let Some(first) = first else { continue };
        match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(mut value) => {
                if value.is_null() {
                    continue;
                }
                // `<<` merge keys: best effort, a failure leaves the document as written.
                let _ = value.apply_merge();
                docs.push(SourceDoc {
                    file: file.to_path_buf(),
                    line: start + first,
                    start,
                    text: chunk,
                    value,
                });
            }
            Err(e) => {
                let line = e.location().map_or(start + first, |l| start + l.line() - 1);
                errors.push(ConfigError::error(
                    file,
                    line,
                    "YAML",
                    "-",
                    format!("syntax error: {e}"),
                ));
            }
        }
    }
    (docs, errors)
}

/// `(first line number, text)` of each document; the `---` marker line is kept as an
/// empty line (or its inline content) so line numbers inside a document stay right.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_start = 1;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker || line == "..." {
            if !cur.trim().is_empty() {
                out.push((cur_start, std::mem::take(&mut cur)));
            }
            cur.clear();
            cur_start = n;
            if marker {
                cur.push_str(line.get(3..).unwrap_or("").trim());
            }
            cur.push('\n');
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push((cur_start, cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_first_line() {
        let text = "# header\n---\napiVersion: ambassador/v1\nkind: TCPMapping\n---\n\n# c\nkind: Module\nname: x\n";
        let (docs, errs) = parse_text(Path::new("a.yaml"), text);
        assert!(errs.is_empty());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 3);
        assert_eq!(docs[1].line, 8);
        assert_eq!(docs[1].key_line(&["name"]), 9);
        assert_eq!(docs[1].key_line(&["missing"]), 8);
    }

    #[test]
    fn syntax_error_reports_the_file_line() {
        let text = "---\nkind: A\n---\nkind: B\nport: [1, 2\nname: x\n";
        let (docs, errs) = parse_text(Path::new("b.yaml"), text);
        assert_eq!(docs.len(), 1);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with("b.yaml:"), "{}", errs[0]);
        assert!((5..=6).contains(&errs[0].line), "{}", errs[0]);
    }

    #[test]
    fn key_line_follows_nested_paths_and_list_items() {
        let text =
            "metadata:\n  name: a\nspec:\n  circuit_breakers:\n  - max_connections: x\n  name: b\n";
        let (docs, _) = parse_text(Path::new("c.yaml"), text);
        assert_eq!(docs[0].key_line(&["spec", "name"]), 6);
        assert_eq!(
            docs[0].key_line(&["circuit_breakers", "max_connections"]),
            5
        );
        assert!(!line_has_key("  portal: 1", "port"));
        assert!(line_has_key("  \"port\" : 1", "port"));
    }

    #[test]
    fn directory_reads_sorted_yaml_and_follows_configmap_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2024_01_01");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("b.yaml"), "kind: B\n").unwrap();
        fs::write(data.join("a.yml"), "kind: A\n").unwrap();
        std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/b.yaml", dir.path().join("b.yaml")).unwrap();
        std::os::unix::fs::symlink("..data/a.yml", dir.path().join("a.yml")).unwrap();
        fs::write(dir.path().join(".hidden.yaml"), "kind: H\n").unwrap();
        fs::write(dir.path().join("notes.txt"), "kind: T\n").unwrap();
        let (docs, errs) = read_paths(&[dir.path().to_path_buf()]);
        assert!(errs.is_empty(), "{errs:?}");
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["A", "B"]);
        assert!(docs[0].file.ends_with("a.yml"));
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let (_, errs) = read_paths(&[PathBuf::from("/nonexistent/x.yaml")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with("/nonexistent/x.yaml:1: File -: cannot read")
        );
    }
}
