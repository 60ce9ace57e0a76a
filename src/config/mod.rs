//! The config pipeline (pure apart from its readers, source.rs and secrets::Files): sources → documents → raw resources →
//! validated model → `RouteTable`.
//!
//! ```text
//! --config PATH…  ─ source.rs ─▶ SourceDoc{file,line,yaml} ─ raw/ ─▶ Resource{TCPMapping,TLSContext,Host,Module,Listener,
//!                                                                           Gateway API (gateway/raw.rs)}
//!   inline YAML ──┘  (List items and Service annotations (annotations.rs) │ secrets.rs reads the files they name
//!                     become documents; Secret documents go to            │ (Secret documents first)
//!                     secrets::Files)                                      │ validate/ (+ tls.rs): memory only;
//!                                                                          │ unused TLSContexts/Hosts only warn;
//!                                                                          │ gateway/translate.rs: routes → mappings
//!                                                                          ▼
//!                                            model::Model ─ build.rs ─▶ Loaded { table: RouteTable, warnings }
//!                                                                        | Err(Vec<ConfigError>)
//! ```
//!
//! Must not: resolve names, bind sockets, spawn tasks or name the runtime.

pub(crate) mod annotations;
pub(crate) mod build;
pub mod error;
pub(crate) mod found;
pub(crate) mod gateway;
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
    /// The Gateway API `gatewayClassName` whose Gateways are served (default `tcpmap`; the
    /// daemon's `--gateway-class`, env `TCPMAP_GATEWAY_CLASS`).
    pub gateway_class: String,
}

impl Default for ConfigInput {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            inline: Vec::new(),
            secrets_dir: None,
            namespace: "default".into(),
            ambassador_id: "default".into(),
            gateway_class: gateway::DEFAULT_CLASS.into(),
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

    /// The Gateway API status lines `tcpmap check` prints (`FILE:LINE: KIND NAME: status:
    /// …`, one per Gateway, listener and route parent; empty without Gateway API resources).
    pub fn status_text(&self) -> &str {
        &self.table.status().text
    }

    /// The Gateway API status as `check --output json` and `/config` carry it (`status`).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.table.status().json.clone())
    }
}

/// Reads, validates and builds the config. `Err` holds every error and the warnings,
/// ordered by file (in reading order) and line.
pub fn load(input: &ConfigInput) -> Result<Loaded, Vec<ConfigError>> {
    let (bundle, problems) = read(input);
    build_bundle(&bundle, problems)
}

/// Everything one load read from disk: the config texts and every certificate or key file
/// they name. [`build_bundle`] turns it into the table without reading anything, so a worker
/// process given the Supervisor's bundle builds the identical table (docs/architecture.md,
/// "Workers").
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Bundle {
    /// The `--config` paths as given (they order the problems).
    paths: Vec<PathBuf>,
    /// The config files read from disk, in reading order, with their text.
    files: Vec<(PathBuf, String)>,
    /// In-memory YAML: `(name shown as FILE, text)`.
    inline: Vec<(String, String)>,
    secrets_dir: Option<PathBuf>,
    namespace: String,
    ambassador_id: String,
    /// The `gatewayClassName` whose Gateways are served (taken when the config was read, so
    /// a worker builds with the Supervisor's).
    #[serde(default)]
    gateway_class: String,
    /// The files on disk the resources name, as read (bytes or why they could not be read);
    /// `kind: Secret` documents are not in here, they are read from `files` again.
    secrets: secrets::Files,
}

/// The reading half of [`load`]: config texts, then every file their resources name. The
/// problems are the files that could not be read.
pub(crate) fn read(input: &ConfigInput) -> (Bundle, Vec<ConfigError>) {
    let (files, problems) = source::read_texts(&input.paths);
    let mut bundle = Bundle {
        paths: input.paths.clone(),
        files,
        inline: input.inline.clone(),
        secrets_dir: input.secrets_dir.clone(),
        namespace: input.namespace.clone(),
        ambassador_id: input.ambassador_id.clone(),
        gateway_class: input.gateway_class.clone(),
        secrets: secrets::Files::default(),
    };
    let (docs, _, _) = bundle.documents();
    // What the Secret documents hold decides which files the resources name on disk.
    let mut probe = bundle.config_files();
    let _ = probe.add_secret_docs(&docs, &bundle.namespace);
    let resources: Vec<raw::Resource> = docs
        .into_iter()
        .flat_map(|doc| raw::classify(Arc::new(doc), &bundle.ambassador_id).resource)
        .collect();
    let mut wanted =
        validate::tls::referenced_files(&resources, bundle.secrets_dir.as_deref(), &probe);
    wanted.extend(gateway::listeners::referenced_files(
        &resources,
        &bundle.namespace,
        bundle.secrets_dir.as_deref(),
        &probe,
    ));
    let mut disk = bundle.config_files();
    disk.read_from_disk(wanted);
    bundle.secrets = disk;
    (bundle, problems)
}

impl Bundle {
    /// The documents of every text (lists expanded), the problems found, and what was found
    /// before expanding (for the "no TCPMapping" warning).
    fn documents(&self) -> (Vec<source::SourceDoc>, Vec<ConfigError>, found::Found) {
        let mut problems = Vec::new();
        let mut docs = Vec::new();
        let texts = self.files.iter().map(|(f, t)| (f.as_path(), t.as_str()));
        let inline = self
            .inline
            .iter()
            .map(|(n, t)| (Path::new(n.as_str()), t.as_str()));
        for (file, text) in texts.chain(inline) {
            let (d, p) = source::parse_text(file, text);
            docs.extend(d);
            problems.extend(p);
        }
        let found = found::Found::of(&docs);
        let (docs, p) = source::expand_lists(docs);
        problems.extend(p);
        let (docs, p) = annotations::expand_annotations(docs);
        problems.extend(p);
        (docs, problems, found)
    }

    /// An empty file store that knows which document names are config files on disk.
    fn config_files(&self) -> secrets::Files {
        secrets::Files::with_config_files(self.files.iter().map(|(f, _)| f.clone()))
    }
}

/// The pure half of [`load`]: parses, validates and builds `bundle` on memory alone;
/// `problems` (the reading half's) are reported with the rest.
pub(crate) fn build_bundle(
    bundle: &Bundle,
    mut problems: Vec<ConfigError>,
) -> Result<Loaded, Vec<ConfigError>> {
    let (docs, p, found) = bundle.documents();
    problems.extend(p);
    let files: Vec<PathBuf> = bundle
        .paths
        .iter()
        .cloned()
        .chain(docs.iter().map(|d| d.file.clone()))
        .collect();
    // `kind: Secret` documents are a secret source, tried before the secrets dir (their
    // entries replace the failed disk reads of the same virtual paths).
    let mut secret_files = bundle.secrets.clone();
    problems.extend(secret_files.add_secret_docs(&docs, &bundle.namespace));
    let mut resources = Vec::new();
    for doc in docs {
        let c = raw::classify(Arc::new(doc), &bundle.ambassador_id);
        problems.extend(c.problems);
        resources.extend(c.resource);
    }
    let tcp_mappings = resources
        .iter()
        .any(|r| matches!(r, raw::Resource::Mapping(_)));
    let first_source = bundle
        .paths
        .first()
        .cloned()
        .or_else(|| bundle.inline.first().map(|(n, _)| PathBuf::from(n)));
    let env = validate::Env {
        namespace: &bundle.namespace,
        secrets_dir: bundle.secrets_dir.as_deref(),
        files: &secret_files,
        gateway_class: &bundle.gateway_class,
    };
    let (mut model, p) = validate::validate(resources, env);
    problems.extend(p);
    sort_status(&mut model.gateway_status, &files);
    // Said only of a config that is otherwise valid: with errors, they are what to fix first.
    // Gateway API routes count when a served Gateway takes them.
    let ours = tcp_mappings || model.mappings.iter().any(gateway::translate::is_route);
    if let (false, Some(file)) = (ours, first_source) {
        if !problems.iter().any(ConfigError::is_error) {
            let class = bundle.gateway_class.as_str();
            problems.push(found.no_mapping_warning(&file, &bundle.ambassador_id, class));
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

/// The status entries in the problems' order: files as first read, then line.
fn sort_status(all: &mut [gateway::status::ResourceStatus], files: &[PathBuf]) {
    let rank = |f: &Path| {
        files
            .iter()
            .position(|x| x == f || f.starts_with(x))
            .unwrap_or(usize::MAX)
    };
    all.sort_by(|a, b| (rank(&a.file), &a.file, a.line).cmp(&(rank(&b.file), &b.file, b.line)));
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
mod emissary_tests;
#[cfg(test)]
mod kube_tests;
#[cfg(test)]
mod passthrough_tests;
#[cfg(test)]
mod tests;
