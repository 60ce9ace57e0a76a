//! Status as a Gateway API controller would write it (SPEC section 14, "Status"): for every
//! served Gateway its `Accepted`/`Programmed` conditions and, per listener, `Accepted`,
//! `ResolvedRefs`, `Conflicted`, `Programmed` and `attachedRoutes`; for every route, per
//! parentRef to a served Gateway, `Accepted` and `ResolvedRefs`. The reasons are the Gateway
//! API's names (`apis/v1/gateway_types.go`, `shared_types.go`).
//!
//! `check` prints one `FILE:LINE: KIND NAME: status: …` line per Gateway, listener and parent;
//! `check --output json` and `/config` carry [`to_json`] as `status`. Nothing here decides
//! what is served: the translation does, and records here what it decided.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::raw::{GROUP, ObjRef};

/// Why a condition is not in its good state: the reason (a Gateway API name) and a message.
pub(crate) type Why = (&'static str, String);

/// One condition: `type`, `status` (`True`/`False`), `reason`, `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    /// `type`.
    pub kind: &'static str,
    /// `status`.
    pub status: bool,
    /// `reason`.
    pub reason: &'static str,
    /// `message` (empty when all is well).
    pub message: String,
}

impl Condition {
    /// A positive-polarity condition: `True` with the type as reason, or `False` with `why`.
    fn of(kind: &'static str, result: &Result<(), Why>) -> Self {
        match result {
            Ok(()) => Self {
                kind,
                status: true,
                reason: kind,
                message: String::new(),
            },
            Err((reason, message)) => Self {
                kind,
                status: false,
                reason,
                message: message.clone(),
            },
        }
    }

    /// `Accepted=True`, or `Accepted=False (NotAllowedByListeners)` when the reason is not
    /// the type's own name.
    pub(crate) fn text(&self) -> String {
        let status = if self.status { "True" } else { "False" };
        if self.reason == self.kind {
            format!("{}={status}", self.kind)
        } else {
            format!("{}={status} ({})", self.kind, self.reason)
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "status": if self.status { "True" } else { "False" },
            "reason": self.reason,
            "message": self.message,
        })
    }
}

/// What the translation decided about one listener of a served Gateway.
#[derive(Debug, Clone)]
pub(crate) struct ListenerStatus {
    /// `name`.
    pub name: String,
    /// The line of its `- name:` entry.
    pub line: usize,
    /// The route kinds it takes (`supportedKinds`).
    pub kinds: Vec<&'static str>,
    /// `Accepted`: `UnsupportedProtocol`, `UnsupportedValue`, or a conflict reason.
    pub accepted: Result<(), Why>,
    /// `ResolvedRefs`: `InvalidCertificateRef`, `RefNotPermitted`, `InvalidRouteKinds`.
    pub resolved: Result<(), Why>,
    /// `Conflicted` True with `ProtocolConflict` or `HostnameConflict`.
    pub conflicted: Option<&'static str>,
    /// Whether it serves (set by the translation once conflicts are known).
    pub programmed: bool,
    /// Routes accepted on it (`attachedRoutes`; counted once per route).
    pub attached: u32,
    /// The routes counted in `attached` (`namespace/name` and kind).
    pub attached_by: Vec<String>,
}

impl ListenerStatus {
    /// A listener with nothing wrong found yet.
    pub(crate) fn new(name: &str, line: usize) -> Self {
        Self {
            name: name.to_string(),
            line,
            kinds: Vec::new(),
            accepted: Ok(()),
            resolved: Ok(()),
            conflicted: None,
            programmed: false,
            attached: 0,
            attached_by: Vec::new(),
        }
    }

    /// Counts route `who` as attached (once).
    pub(crate) fn attach(&mut self, who: &str) {
        if !self.attached_by.iter().any(|w| w == who) {
            self.attached_by.push(who.to_string());
            self.attached += 1;
        }
    }

    fn conditions(&self) -> Vec<Condition> {
        // A Terminate listener with one of several certificates unresolved still serves.
        let programmed = if self.programmed {
            Ok(())
        } else if let Some(c) = self.conflicted {
            Err((c, "conflicts with another listener on its port".into()))
        } else {
            match (&self.accepted, &self.resolved) {
                (Err((_, m)), _) | (_, Err((_, m))) => Err(("Invalid", m.clone())),
                _ => Err(("Invalid", "not served".into())),
            }
        };
        let conflicted = Condition {
            kind: "Conflicted",
            status: self.conflicted.is_some(),
            reason: self.conflicted.unwrap_or("NoConflicts"),
            message: String::new(),
        };
        vec![
            Condition::of("Accepted", &self.accepted),
            Condition::of("ResolvedRefs", &self.resolved),
            conflicted,
            Condition::of("Programmed", &programmed),
        ]
    }
}

/// A route's status for one parentRef to a served Gateway.
#[derive(Debug, Clone)]
pub(crate) struct ParentStatus {
    /// The parentRef (its namespace filled in).
    pub parent: ObjRef,
    /// The line of its `- name:` entry.
    pub line: usize,
    /// `Accepted`: `NotAllowedByListeners`, `NoMatchingListenerHostname`, `NoMatchingParent`.
    pub accepted: Result<(), Why>,
}

/// The status body of a Gateway or a route.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// A served Gateway.
    Gateway {
        /// `spec.addresses` that are not IP addresses (`UnsupportedAddress`), if any.
        bad_address: Option<String>,
        /// Its listeners, in spec order.
        listeners: Vec<ListenerStatus>,
    },
    /// A TLSRoute or TCPRoute with at least one parentRef to a served Gateway.
    Route {
        /// One per such parentRef.
        parents: Vec<ParentStatus>,
        /// `ResolvedRefs`: `RefNotPermitted`, `InvalidKind`, `BackendNotFound`, … (the first
        /// backend's that fails).
        resolved: Result<(), Why>,
    },
}

/// The status of one resource, where it is written.
#[derive(Debug, Clone)]
pub(crate) struct ResourceStatus {
    /// `Gateway`, `TLSRoute` or `TCPRoute`.
    pub kind: &'static str,
    /// `metadata.namespace` (the proxy's when it names none).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The file it is in.
    pub file: PathBuf,
    /// Its document's first line.
    pub line: usize,
    /// The conditions.
    pub body: Body,
}

impl ResourceStatus {
    /// The Gateway's own conditions: `Accepted` (reason `ListenersNotValid` when a listener
    /// is not accepted or conflicted, `UnsupportedAddress` when an address is not an IP
    /// address) and `Programmed` (`Invalid` when no listener is programmed).
    fn gateway_conditions(bad_address: Option<&String>, ls: &[ListenerStatus]) -> Vec<Condition> {
        let invalid = ls
            .iter()
            .filter(|l| l.accepted.is_err() || l.conflicted.is_some())
            .count();
        let mut accepted = Condition::of("Accepted", &Ok(()));
        if let Some(a) = bad_address {
            accepted.reason = "UnsupportedAddress";
            accepted.message = format!("address `{a}` is not an IP address; not applied");
        } else if invalid > 0 {
            accepted.reason = "ListenersNotValid";
            accepted.message = format!("{invalid} of {} listeners are not valid", ls.len());
        }
        let programmed = if ls.iter().any(|l| l.programmed) {
            Ok(())
        } else {
            Err(("Invalid", "no listener is programmed".to_string()))
        };
        vec![accepted, Condition::of("Programmed", &programmed)]
    }

    /// One `FILE:LINE: KIND NAME: status: …` line for the resource and each listener or
    /// parent.
    pub(crate) fn lines(&self) -> Vec<String> {
        let head = |line: usize| {
            format!(
                "{}:{line}: {} {}: status:",
                self.file.display(),
                self.kind,
                self.name
            )
        };
        let join = |cs: &[Condition]| {
            cs.iter()
                .filter(|c| c.kind != "Conflicted" || c.status)
                .map(Condition::text)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::new();
        match &self.body {
            Body::Gateway {
                bad_address,
                listeners,
            } => {
                let own = Self::gateway_conditions(bad_address.as_ref(), listeners);
                out.push(format!("{} {}", head(self.line), join(&own)));
                for l in listeners {
                    out.push(format!(
                        "{} listener {}: {}; attachedRoutes {}",
                        head(l.line),
                        l.name,
                        join(&l.conditions()),
                        l.attached
                    ));
                }
            }
            Body::Route { parents, resolved } => {
                for p in parents {
                    let cs = [
                        Condition::of("Accepted", &p.accepted),
                        Condition::of("ResolvedRefs", resolved),
                    ];
                    out.push(format!(
                        "{} parent {}: {}",
                        head(p.line),
                        parent_text(&p.parent),
                        join(&cs)
                    ));
                }
            }
        }
        out
    }

    /// `{kind, namespace, name, file, line, status}` with `status` shaped as the resource's
    /// Kubernetes `status` (`conditions` and `listeners`, or `parents`).
    pub(crate) fn to_json(&self) -> Value {
        let status = match &self.body {
            Body::Gateway {
                bad_address,
                listeners,
            } => {
                let own = Self::gateway_conditions(bad_address.as_ref(), listeners);
                let ls: Vec<Value> = listeners
                    .iter()
                    .map(|l| {
                        let kinds: Vec<Value> = l
                            .kinds
                            .iter()
                            .map(|k| json!({"group": GROUP, "kind": k}))
                            .collect();
                        json!({
                            "name": l.name,
                            "line": l.line,
                            "supportedKinds": kinds,
                            "attachedRoutes": l.attached,
                            "conditions": l.conditions().iter().map(Condition::to_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({
                    "conditions": own.iter().map(Condition::to_json).collect::<Vec<_>>(),
                    "listeners": ls,
                })
            }
            Body::Route { parents, resolved } => {
                let ps: Vec<Value> = parents
                    .iter()
                    .map(|p| {
                        let cs = [
                            Condition::of("Accepted", &p.accepted),
                            Condition::of("ResolvedRefs", resolved),
                        ];
                        let mut r = json!({
                            "group": p.parent.group.as_deref().unwrap_or(GROUP),
                            "kind": p.parent.kind.as_deref().unwrap_or("Gateway"),
                            "namespace": p.parent.namespace,
                            "name": p.parent.name,
                        });
                        if let Some(obj) = r.as_object_mut() {
                            if let Some(s) = &p.parent.section {
                                obj.insert("sectionName".into(), s.clone().into());
                            }
                            if let Some(port) = p.parent.port {
                                obj.insert("port".into(), port.into());
                            }
                        }
                        json!({
                            "parentRef": r,
                            "line": p.line,
                            "conditions": cs.iter().map(Condition::to_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({ "parents": ps })
            }
        };
        json!({
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "file": self.file.display().to_string(),
            "line": self.line,
            "status": status,
        })
    }
}

/// `Gateway infra/edge`, with ` section tls` and ` port 443` when the ref names them.
fn parent_text(p: &ObjRef) -> String {
    let mut s = format!(
        "{} {}/{}",
        p.kind.as_deref().unwrap_or("Gateway"),
        p.namespace.as_deref().unwrap_or_default(),
        p.name
    );
    if let Some(section) = &p.section {
        s.push_str(&format!(" section {section}"));
    }
    if let Some(port) = p.port {
        s.push_str(&format!(" port {port}"));
    }
    s
}

/// The status of a whole config, rendered once when the config is built: the lines `check`
/// prints and the entries `check --output json` and `/config` carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rendered {
    /// One line each, newline-terminated.
    pub text: String,
    /// [`ResourceStatus::to_json`] of each.
    pub json: Vec<Value>,
}

/// Renders `all` (in the order given).
pub(crate) fn render(all: &[ResourceStatus]) -> Rendered {
    let mut text = String::new();
    for s in all {
        for l in s.lines() {
            text.push_str(&l);
            text.push('\n');
        }
    }
    Rendered {
        text,
        json: all.iter().map(ResourceStatus::to_json).collect(),
    }
}
