//! The one Prometheus text parser of the tests: split the exposition into samples, look one
//! up by name and labels, and check the format line by line.

/// One sample line: `name{labels} value` (`labels` without the braces, empty when absent).
#[derive(Debug)]
pub struct Sample<'a> {
    /// The metric name.
    pub name: &'a str,
    /// The labels, without the braces.
    pub labels: &'a str,
    /// The value as written.
    pub value: &'a str,
    /// The whole line.
    pub line: &'a str,
}

impl Sample<'_> {
    /// True when the labels contain `key="value"`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.labels.contains(&format!("{key}=\"{value}\""))
    }
}

/// Every sample line of `text` (comments and blank lines skipped; lines without a value too).
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').unwrap_or(l)),
                None => (series, ""),
            };
            Some(Sample {
                name,
                labels,
                value,
                line,
            })
        })
}

/// The value of the first sample named `name` whose labels contain every `key="value"` in
/// `labels` (0 when absent, NaN when the value does not parse).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.has(k, v)))
        .map_or(0.0, |s| s.value.parse().unwrap_or(f64::NAN))
}

/// Checks the exposition format: every line is a `# HELP`/`# TYPE`/`# EOF` comment or
/// `tcpmap_name[{labels}] value` with a numeric value. Returns the number of samples.
pub fn check_format(text: &str) -> usize {
    let mut count = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE ") || rest == "EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("tcpmap_"), "unprefixed metric: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        count += 1;
    }
    count
}
