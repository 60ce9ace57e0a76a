//! The config pipeline (pure apart from its readers, source.rs and secrets::Files): sources → documents → raw resources →
//! validated model → [`RouteTable`](crate::route::RouteTable).
//!
//! ```text
//! --config PATH…  ─ source.rs ─▶ SourceDoc{file,line,yaml} ─ raw/ ─▶ Resource{TCPMapping,TLSContext,Host,Module}
//!   inline YAML ──┘  (List items become documents;                         │ secrets.rs reads the files they name
//!                     Secret documents go to secrets::Files)               │ (Secret documents first)
//!                                                                          │ validate/ (+ tls.rs): memory only
//!                                                                          ▼
//!                                            model::Model ─ build.rs ─▶ Loaded { table: RouteTable, warnings }
//!                                                                        | Err(Vec<ConfigError>)
//! ```
//!
//! Must not: resolve names, bind sockets, spawn tasks or name the runtime.

pub(crate) mod build;
pub mod error;
pub(crate) mod found;
pub(crate) mod model;
pub(crate) mod raw;
pub(crate) mod secrets;
pub(crate) mod source;
pub(crate) mod tls;
pub(crate) mod validate;

#[cfg(test)]
pub(crate) mod testutil;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfigError, Severity};

/// What to load.
#[derive(Debug, Clone)]
pub struct ConfigInput {
    /// `--config` paths: files or directories.
    pub paths: Vec<PathBuf>,
    /// In-memory YAML: `(name shown as FILE, text)`.
    pub inline: Vec<(String, String)>,
    /// `--secrets-dir`.
    pub secrets_dir: Option<PathBuf>,
    /// The proxy's namespace (default `default`).
    pub namespace: String,
    /// The proxy's `ambassador_id` (default `default`).
    pub ambassador_id: String,
}

impl Default for ConfigInput {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            inline: Vec::new(),
            secrets_dir: None,
            namespace: "default".into(),
            ambassador_id: "default".into(),
        }
    }
}

/// A valid config.
#[derive(Debug)]
pub struct Loaded {
    /// The routes (generation 0; the supervisor numbers it).
    pub(crate) table: crate::route::RouteTable,
    /// Warnings (unknown attributes, duplicate names, …).
    pub warnings: Vec<ConfigError>,
}

impl Loaded {
    /// The routes as `tcpmap check` prints them, one line per group.
    pub fn render_text(&self) -> String {
        self.table.render_text()
    }

    /// The routes as the admin `/config` endpoint shows them (generation 0).
    pub fn to_json(&self) -> serde_json::Value {
        self.table.to_json()
    }
}

/// Reads, validates and builds the config. `Err` holds every error and the warnings,
/// ordered by file (in reading order) and line.
pub fn load(input: &ConfigInput) -> Result<Loaded, Vec<ConfigError>> {
    let (mut docs, mut problems) = source::read_paths(&input.paths);
    let config_files: Vec<PathBuf> = docs.iter().map(|d| d.file.clone()).collect();
    for (name, text) in &input.inline {
        let (d, p) = source::parse_text(Path::new(name), text);
        docs.extend(d);
        problems.extend(p);
    }
    let found = found::Found::of(&docs);
    let (docs, p) = source::expand_lists(docs);
    problems.extend(p);
    let files: Vec<PathBuf> = input
        .paths
        .iter()
        .cloned()
        .chain(docs.iter().map(|d| d.file.clone()))
        .collect();
    // `kind: Secret` documents are a secret source, tried before the secrets dir.
    let mut secret_files = secrets::Files::with_config_files(config_files);
    problems.extend(secret_files.add_secret_docs(&docs, &input.namespace));
    let mut resources = Vec::new();
    for doc in docs {
        let c = raw::classify(Arc::new(doc), &input.ambassador_id);
        problems.extend(c.problems);
        resources.extend(c.resource);
    }
    let ours = resources
        .iter()
        .any(|r| matches!(r, raw::Resource::Mapping(_)));
    let first_source = input
        .paths
        .first()
        .cloned()
        .or_else(|| input.inline.first().map(|(n, _)| PathBuf::from(n)));
    // Read every file the resources name, then validate on memory alone.
    let secrets_dir = input.secrets_dir.as_deref();
    let wanted = validate::tls::referenced_files(&resources, secrets_dir, &secret_files);
    secret_files.read_from_disk(wanted);
    let env = validate::Env {
        namespace: &input.namespace,
        secrets_dir,
        files: &secret_files,
    };
    let (model, p) = validate::validate(resources, env);
    problems.extend(p);
    // Said only of a config that is otherwise valid: with errors, they are what to fix first.
    if let (false, Some(file)) = (ours, first_source) {
        if !problems.iter().any(ConfigError::is_error) {
            problems.push(found.no_mapping_warning(&file, &input.ambassador_id));
        }
    }
    sort_problems(&mut problems, &files);
    if problems.iter().any(ConfigError::is_error) {
        return Err(problems);
    }
    match build::build(&model) {
        Ok(table) => Ok(Loaded {
            table,
            warnings: problems,
        }),
        Err(mut errs) => {
            errs.extend(problems);
            sort_problems(&mut errs, &files);
            Err(errs)
        }
    }
}

/// Stable order: files as first read, then line.
fn sort_problems(problems: &mut [ConfigError], files: &[PathBuf]) {
    let rank = |f: &Path| {
        files
            .iter()
            .position(|x| x == f || f.starts_with(x))
            .unwrap_or(usize::MAX)
    };
    problems
        .sort_by(|a, b| (rank(&a.file), &a.file, a.line).cmp(&(rank(&b.file), &b.file, b.line)));
}

#[cfg(test)]
mod kube_tests;
#[cfg(test)]
mod passthrough_tests;
#[cfg(test)]
mod tests;
