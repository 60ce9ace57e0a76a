//! Config sources → YAML documents, each remembering its file and line numbers.
//!
//! Owns: reading `--config` paths (files and directories, including Kubernetes ConfigMap
//! mounts with their `..data` symlinks), splitting `---` documents, YAML syntax errors with
//! `FILE:LINE`, reading a `kind: List` (what `kubectl get -o yaml` prints) item by item, and
//! finding the line of an attribute in a document's text.
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

/// Replaces each `kind: List` document by its `items`, each a document of its own whose line
/// is the item's `- ` line (what `kubectl get ... -o yaml` prints). A List inside a List is an
/// error, as is `items` that is not a list.
pub(crate) fn expand_lists(docs: Vec<SourceDoc>) -> (Vec<SourceDoc>, Vec<ConfigError>) {
    let mut out = Vec::with_capacity(docs.len());
    let mut errors = Vec::new();
    for doc in docs {
        if !is_list(&doc.value) {
            out.push(doc);
            continue;
        }
        let items = match doc.value.get("items") {
            None | Some(Value::Null) => continue,
            Some(Value::Sequence(items)) => items,
            Some(_) => {
                let line = doc.key_line(&["items"]);
                errors.push(list_error(&doc.file, line, "`items` must be a list"));
                continue;
            }
        };
        let spans = item_spans(&doc.text);
        let lines: Vec<&str> = doc.text.lines().collect();
        for (i, value) in items.iter().enumerate() {
            // When the items are not one block entry per item (flow style), every item points
            // at the `items:` line and attribute lines fall back to it.
            let (start, text) = match spans.get(i) {
                Some(&(from, to)) if spans.len() == items.len() => {
                    let text: String = lines
                        .get(from..to)
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|l| [*l, "\n"])
                        .collect();
                    (doc.start + from, text)
                }
                _ => (doc.key_line(&["items"]), String::new()),
            };
            if is_list(value) {
                errors.push(list_error(
                    &doc.file,
                    start,
                    "a List inside a List is not read (kubectl prints one level)",
                ));
                continue;
            }
            out.push(SourceDoc {
                file: doc.file.clone(),
                line: start,
                start,
                text,
                value: value.clone(),
            });
        }
    }
    (out, errors)
}

fn is_list(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("List")
}

fn list_error(file: &Path, line: usize, message: &str) -> ConfigError {
    ConfigError::error(file, line, "List", "-", message)
}

/// The `(first, end)` line indexes (0-based, end exclusive) of each block entry of the
/// top-level `items:` sequence of a document's text. An entry starts at a `-` in the column
/// of the first entry and runs until the next one or a line indented less (or a sibling key).
fn item_spans(text: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let content = |l: &&str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let Some(base) = lines.iter().find(|l| content(l)).map(|l| indent(l)) else {
        return Vec::new();
    };
    let Some(items_at) = lines.iter().position(|l| {
        indent(l) == base && line_has_key(l, "items") && {
            // Only a block sequence follows `items:` with nothing (or a comment) after it.
            let rest = l.trim_start().trim_start_matches("items").trim_start();
            let rest = rest.strip_prefix(':').unwrap_or(rest).trim();
            rest.is_empty() || rest.starts_with('#')
        }
    }) else {
        return Vec::new();
    };
    let is_dash = |l: &str| {
        let t = l.trim_start_matches(' ');
        t == "-" || t.starts_with("- ")
    };
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut column = None;
    let mut last_content = items_at;
    for (i, line) in lines.iter().enumerate().skip(items_at + 1) {
        if !content(line) {
            continue;
        }
        let col = *column.get_or_insert(indent(line));
        let at = indent(line);
        if col < base || at < col || at == col && !is_dash(line) {
            break;
        }
        if at == col {
            if let Some(last) = spans.last_mut() {
                last.1 = last_content + 1;
            }
            spans.push((i, i + 1));
        }
        last_content = i;
    }
    if let Some(last) = spans.last_mut() {
        last.1 = last_content + 1;
    }
    spans
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
    fn list_items_become_documents_at_their_lines() {
        // Items indented under `items:`, a block scalar whose lines start with dashes, a
        // comment between items, and keys after the block.
        let text = "# export\napiVersion: v1\nitems:\n  - kind: A\n    pem: |\n      -----BEGIN X-----\n      - not an item\n  # between\n  - kind: B\n    name: b\nkind: List\nmetadata: {}\n";
        let (docs, errs) = parse_text(Path::new("l.yaml"), text);
        assert!(errs.is_empty(), "{errs:?}");
        let (items, errs) = expand_lists(docs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].line, items[1].line), (4, 9));
        assert_eq!(items[1].key_line(&["name"]), 10);
        assert_eq!(items[0].value["kind"].as_str(), Some("A"));
        assert!(!items[0].text.contains("kind: B"));
        assert!(!items[1].text.contains("metadata"));
    }

    #[test]
    fn flow_style_items_point_at_the_items_line() {
        let text = "kind: List\nitems: [{kind: A, name: a}, {kind: B}]\n";
        let (docs, _) = parse_text(Path::new("f.yaml"), text);
        let (items, errs) = expand_lists(docs);
        assert!(errs.is_empty());
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].line, 2);
        assert_eq!(items[0].key_line(&["name"]), 2);
    }

    #[test]
    fn lists_with_bad_items_are_errors() {
        let (docs, _) = parse_text(Path::new("e.yaml"), "kind: List\nitems: 3\n");
        let (items, errs) = expand_lists(docs);
        assert!(items.is_empty());
        assert_eq!(
            errs[0].to_string(),
            "e.yaml:2: List -: `items` must be a list"
        );
        let (docs, _) = parse_text(Path::new("e.yaml"), "kind: List\n");
        assert!(expand_lists(docs).0.is_empty());
    }

    /// One List item as generated: a block scalar whose lines may look like list entries or
    /// document markers, a nested list, a comment after it.
    #[derive(Debug, Clone)]
    struct Item {
        scalar: Vec<String>,
        nested: usize,
        comment: bool,
    }

    fn item() -> impl proptest::strategy::Strategy<Value = Item> {
        use proptest::prelude::*;
        let line = prop_oneof![
            Just("-----BEGIN CERTIFICATE-----".to_string()),
            Just("- not an item".to_string()),
            Just("---".to_string()),
            "[a-z]{1,8}( [a-z]{1,4})?",
        ];
        (prop::collection::vec(line, 0..4), 0usize..3, any::<bool>()).prop_map(
            |(scalar, nested, comment)| Item {
                scalar,
                nested,
                comment,
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn generated_lists_give_each_item_its_line(
            items in proptest::collection::vec(item(), 0..6),
            indent in 0usize..3,
            header in proptest::bool::ANY,
        ) {
            let pad = " ".repeat(indent * 2);
            let mut text = String::new();
            let mut n = 0usize;
            let mut push = |text: &mut String, l: String| { text.push_str(&l); text.push('\n'); n += 1; n };
            if header { push(&mut text, "# exported".to_string()); }
            push(&mut text, "apiVersion: v1".to_string());
            push(&mut text, "items:".to_string());
            let mut expected = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let first = push(&mut text, format!("{pad}- name: item{i}"));
                let mut pem_line = None;
                if !it.scalar.is_empty() {
                    pem_line = Some(push(&mut text, format!("{pad}  pem: |")));
                    for l in &it.scalar {
                        push(&mut text, format!("{pad}    {l}"));
                    }
                }
                if it.nested > 0 {
                    push(&mut text, format!("{pad}  list:"));
                    for j in 0..it.nested {
                        push(&mut text, format!("{pad}  - {j}"));
                    }
                }
                if it.comment {
                    push(&mut text, "# between".to_string());
                }
                expected.push((first, pem_line));
            }
            push(&mut text, "kind: List".to_string());
            let (docs, errs) = parse_text(Path::new("p.yaml"), &text);
            proptest::prop_assert!(errs.is_empty(), "{:?}\n{}", errs, text);
            let (out, errs) = expand_lists(docs);
            proptest::prop_assert!(errs.is_empty(), "{:?}", errs);
            proptest::prop_assert_eq!(out.len(), items.len(), "{}", text);
            for (i, (doc, (first, pem))) in out.iter().zip(&expected).enumerate() {
                proptest::prop_assert_eq!(doc.line, *first, "{}", text);
                let name = format!("item{i}");
                proptest::prop_assert_eq!(doc.value["name"].as_str(), Some(name.as_str()));
                proptest::prop_assert_eq!(doc.key_line(&["pem"]), pem.unwrap_or(*first));
            }
        }
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
