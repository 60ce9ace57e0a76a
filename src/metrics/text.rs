//! Text helpers: label escaping and OpenMetrics → Prometheus 0.0.4 text conversion.
//!
//! prometheus-client writes OpenMetrics text (`# TYPE x counter` above `x_total`
//! samples, `# UNIT`, `# EOF`) and does not escape label values. The admin endpoint
//! serves the classic `text/plain; version=0.0.4` format, so this file rewrites the
//! counter descriptors to the sample name and drops the OpenMetrics-only lines.
//! Pure string work only.

/// Escapes a label value for the text formats: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub(super) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

/// Converts prometheus-client's OpenMetrics output to Prometheus text format 0.0.4.
pub(super) fn openmetrics_to_prometheus(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut lines = om.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            let help = rest.get(name.len()..).unwrap_or_default();
            let counter = lines
                .peek()
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            if counter {
                // Consume the TYPE line and re-emit both under the `_total` name.
                lines.next();
                out.push_str(&format!("# HELP {name}_total{help}\n"));
                out.push_str(&format!("# TYPE {name}_total counter\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
pub(super) mod check {
    //! A small validator for Prometheus 0.0.4 text, used by the unit tests.

    use std::collections::BTreeMap;

    /// One parsed sample line.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Sample {
        pub(crate) name: String,
        pub(crate) labels: BTreeMap<String, String>,
        pub(crate) value: f64,
    }

    /// Parses `text`; fails on a malformed line or a sample without a `# TYPE`d family.
    pub(crate) fn parse(text: &str) -> Result<Vec<Sample>, String> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("line {n}: bad TYPE: {line}"));
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {n}: unknown type {kind}"));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(format!("line {n}: duplicate TYPE for {name}"));
                }
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            if line.starts_with('#') {
                return Err(format!("line {n}: unexpected comment: {line}"));
            }
            let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {line}"))?;
            let family = family_of(&sample.name, &types)
                .ok_or_else(|| format!("line {n}: no # TYPE for {}", sample.name))?;
            if family.is_empty() {
                return Err(format!("line {n}: empty family"));
            }
            samples.push(sample);
        }
        Ok(samples)
    }

    fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
        if types.contains_key(name) {
            return Some(name);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).is_some_and(|k| k == "histogram") {
                    return Some(base);
                }
            }
        }
        None
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| "no value".to_string())?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err("bad metric name".into());
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let Some(&(start, c)) = chars.peek() else {
                    return Err("unterminated labels".into());
                };
                if c == '}' {
                    rest = &body[start + 1..];
                    break;
                }
                let eq = body[start..].find("=\"").ok_or("label without =\"")? + start;
                let key = body[start..eq].trim_start_matches(',').to_string();
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad label name {key:?}"));
                }
                while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => return Err("bad escape".into()),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated label value".into()),
                    }
                }
                if chars.peek().is_some_and(|&(_, c)| c == ',') {
                    chars.next();
                }
                labels.insert(key, value);
            }
        }
        let value_text = rest.strip_prefix(' ').ok_or("no space before value")?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().map_err(|e| format!("bad value: {e}"))?,
        };
        Ok(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    /// The value of the sample `name` whose labels include all of `want`.
    pub(crate) fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}
