//! A small reader of the Prometheus text format (0.0.4), for the tests that check `ka run
//! --metrics` against `ka status --json`.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with its `_total`, `_bucket`... suffix).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses every sample line (comments and blank lines skipped).
///
/// # Errors
/// A line that is not `name{labels} value` (the line is in the message).
pub fn parse(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bad = || anyhow::anyhow!("not a sample line: {line:?}");
        let (head, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad())?,
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(bad)?;
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest.split_once("=\"").ok_or_else(bad)?;
                    // Values escape only \\, \" and \n.
                    let mut v = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        let (i, c) = chars.next().ok_or_else(bad)?;
                        match c {
                            '\\' => match chars.next().ok_or_else(bad)?.1 {
                                'n' => v.push('\n'),
                                other => v.push(other),
                            },
                            '"' => break i,
                            c => v.push(c),
                        }
                    };
                    labels.insert(k.trim_start_matches(',').to_owned(), v);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample { name, labels, value });
    }
    Ok(out)
}

/// The value of the one sample of `name` whose labels include `labels`; `None` if there is none.
///
/// # Panics
/// Several samples match.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(found.len() <= 1, "{} samples of {name} match {labels:?}: {found:?}", found.len());
    found.first().map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let s = parse("# HELP x y\nka_a_total 3\nka_b{a=\"1\",b=\"q\\\"x\"} 2.5\nka_c_bucket{le=\"+Inf\"} 7\n").expect("parse");
        assert_eq!(value(&s, "ka_a_total", &[]), Some(3.0));
        assert_eq!(value(&s, "ka_b", &[("b", "q\"x")]), Some(2.5));
        assert_eq!(value(&s, "ka_c_bucket", &[("le", "+Inf")]), Some(7.0));
        assert!(parse("garbage").is_err());
    }
}
