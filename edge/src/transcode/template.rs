//! `google.api.http` path templates: `/v1/campaigns/{campaign.id}`,
//! `/files/{name=**}`, `/v1/{name=shelves/*}/books`, with an optional
//! `:verb` suffix. Matching works on percent-decoded segments, so a
//! variable's value may hold any character, `/` included (`%2F`), and is
//! handed to the service as data, never as a path.

use std::fmt;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Any,
    /// `**`: the rest of the path (zero or more segments); only last.
    Rest,
    /// `{field.path=pattern}`; the pattern is `*` when not given.
    Variable {
        field_path: Vec<String>,
        pattern: Vec<Segment>,
    },
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
    verb: Option<String>,
}

/// Why a template does not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// A variable bound by a match: the request field it sets and its value.
pub type Binding = (Vec<String>, String);

impl PathTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let error = |why: &str| TemplateError(format!("path template {text:?}: {why}"));
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| error("must start with '/'"))?;
        // The verb is the last ':' outside a variable.
        let (path, verb) = match rest.rfind(':') {
            Some(at) if !rest[at..].contains('}') => {
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            _ => (rest, None),
        };
        let mut segments = Vec::new();
        let mut chars = path;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(|| error("unclosed '{'"))?;
                let (name, pattern) = match inner[..end].split_once('=') {
                    Some((name, pattern)) => (name, parse_plain(pattern).map_err(|w| error(&w))?),
                    None => (&inner[..end], vec![Segment::Any]),
                };
                if name.is_empty() || name.split('.').any(str::is_empty) {
                    return Err(error("a variable needs a field path"));
                }
                segments.push(Segment::Variable {
                    field_path: name.split('.').map(str::to_owned).collect(),
                    pattern,
                });
                chars = &inner[end + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                segments.extend(parse_plain(&chars[..end]).map_err(|w| error(&w))?);
                chars = &chars[end..];
            }
            chars = match chars.strip_prefix('/') {
                Some("") => return Err(error("trailing '/'")),
                Some(next) => next,
                None if chars.is_empty() => chars,
                None => return Err(error("expected '/' after a variable")),
            };
        }
        let rest_positions = flatten(&segments)
            .iter()
            .position(|segment| *segment == Segment::Rest);
        if let Some(at) = rest_positions
            && at + 1 != flatten(&segments).len()
        {
            return Err(error("'**' must be the last segment"));
        }
        Ok(Self {
            text: text.to_string(),
            segments,
            verb,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The template in OpenAPI form: `/v1/campaigns/{campaign.id}`.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Any => out.push('*'),
                Segment::Rest => out.push_str("**"),
                Segment::Variable { field_path, .. } => {
                    out.push('{');
                    out.push_str(&field_path.join("."));
                    out.push('}');
                }
            }
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// The field paths of the template's variables.
    pub fn variables(&self) -> impl Iterator<Item = &[String]> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Variable { field_path, .. } => Some(field_path.as_slice()),
            _ => None,
        })
    }

    /// Literal segments count; more literals = more specific.
    pub fn literal_count(&self) -> usize {
        flatten(&self.segments)
            .iter()
            .filter(|segment| matches!(segment, Segment::Literal(_)))
            .count()
    }

    /// True when the template has no variables or wildcards.
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|segment| matches!(segment, Segment::Literal(_)))
    }

    /// Matches decoded path segments (the path split on '/', each segment
    /// percent-decoded); returns the bindings.
    pub fn matches(&self, segments: &[String]) -> Option<Vec<Binding>> {
        match &self.verb {
            None => self.matches_without_verb(segments),
            Some(verb) => {
                let (last, before) = segments.split_last()?;
                let stem = last.strip_suffix(verb.as_str())?.strip_suffix(':')?;
                let mut segments = before.to_vec();
                segments.push(stem.to_string());
                self.matches_without_verb(&segments)
            }
        }
    }

    fn matches_without_verb(&self, segments: &[String]) -> Option<Vec<Binding>> {
        let mut bindings = Vec::new();
        let mut at = 0;
        for (index, segment) in self.segments.iter().enumerate() {
            let last = index + 1 == self.segments.len();
            match segment {
                Segment::Literal(text) => {
                    if segments.get(at)? != text {
                        return None;
                    }
                    at += 1;
                }
                Segment::Any => {
                    segments.get(at)?;
                    at += 1;
                }
                Segment::Rest => at = segments.len(),
                Segment::Variable {
                    field_path,
                    pattern,
                } => {
                    let taken = match_plain(pattern, &segments[at.min(segments.len())..], last)?;
                    let value = segments[at..at + taken].join("/");
                    if value.is_empty() {
                        return None;
                    }
                    bindings.push((field_path.clone(), value));
                    at += taken;
                }
            }
        }
        (at == segments.len()).then_some(bindings)
    }
}

/// Literals and wildcards separated by '/'.
fn parse_plain(text: &str) -> Result<Vec<Segment>, String> {
    text.split('/')
        .map(|piece| match piece {
            "" => Err("empty segment".to_string()),
            "*" => Ok(Segment::Any),
            "**" => Ok(Segment::Rest),
            literal if literal.contains(['{', '}', '=', '*']) => {
                Err(format!("unexpected characters in {literal:?}"))
            }
            literal => Ok(Segment::Literal(literal.to_string())),
        })
        .collect()
}

fn flatten(segments: &[Segment]) -> Vec<Segment> {
    let mut out = Vec::new();
    for segment in segments {
        match segment {
            Segment::Variable { pattern, .. } => out.extend(pattern.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    out
}

/// How many of `segments` a variable's pattern takes.
fn match_plain(pattern: &[Segment], segments: &[String], last: bool) -> Option<usize> {
    let mut taken = 0;
    for piece in pattern {
        match piece {
            Segment::Literal(text) => {
                if segments.get(taken)? != text {
                    return None;
                }
                taken += 1;
            }
            Segment::Any => {
                segments.get(taken)?;
                taken += 1;
            }
            Segment::Rest if last => taken = segments.len(),
            Segment::Rest | Segment::Variable { .. } => return None,
        }
    }
    Some(taken)
}

/// Splits a request path into percent-decoded segments. `None` when a
/// segment is not valid UTF-8 once decoded or has a broken escape.
pub fn split_path(path: &str) -> Option<Vec<String>> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    trimmed.split('/').map(decode).collect()
}

/// Percent-decodes one segment or query component.
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'%' => return None,
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(template: &str, request: &str) -> Option<Vec<(String, String)>> {
        let segments = split_path(request).expect("valid path");
        PathTemplate::parse(template)
            .expect("template")
            .matches(&segments)
            .map(|bindings| {
                bindings
                    .into_iter()
                    .map(|(field, value)| (field.join("."), value))
                    .collect()
            })
    }

    #[test]
    fn literal_paths_match_only_themselves() {
        assert_eq!(bind("/serve", "/serve"), Some(vec![]));
        assert_eq!(bind("/serve", "/serve/x"), None);
        assert_eq!(bind("/api/v1/ads", "/api/v1"), None);
    }

    #[test]
    fn variables_bind_one_segment_and_nested_fields() {
        assert_eq!(
            bind("/v1/campaigns/{campaign.id}", "/v1/campaigns/c-1"),
            Some(vec![("campaign.id".into(), "c-1".into())])
        );
        assert_eq!(
            bind("/api/v1/ads/{ad_id}/cancel", "/api/v1/ads/a%2Fb/cancel"),
            Some(vec![("ad_id".into(), "a/b".into())])
        );
        assert_eq!(bind("/api/v1/ads/{ad_id}", "/api/v1/ads/x/y"), None);
    }

    #[test]
    fn wildcard_patterns_and_verbs() {
        assert_eq!(
            bind("/files/{name=**}", "/files/a/b/c"),
            Some(vec![("name".into(), "a/b/c".into())])
        );
        assert_eq!(
            bind("/v1/{name=shelves/*}/books", "/v1/shelves/7/books"),
            Some(vec![("name".into(), "shelves/7".into())])
        );
        assert_eq!(
            bind("/v1/jobs/{id}:cancel", "/v1/jobs/9:cancel"),
            Some(vec![("id".into(), "9".into())])
        );
        assert_eq!(bind("/v1/jobs/{id}:cancel", "/v1/jobs/9"), None);
    }

    #[test]
    fn traversal_in_a_variable_is_just_data() {
        assert_eq!(
            bind("/api/v1/ads/{ad_id}", "/api/v1/ads/..%2F..%2Fetc%2Fpasswd"),
            Some(vec![("ad_id".into(), "../../etc/passwd".into())])
        );
    }

    #[test]
    fn bad_templates_and_bad_encodings_are_refused() {
        for bad in ["serve", "/a/{", "/a/{}", "/a/**/b", "/a/", "/a/{x}b"] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(split_path("/a/%ff"), None);
        assert_eq!(split_path("/a/%4"), None);
        assert_eq!(decode("a%20b"), Some("a b".into()));
    }

    #[test]
    fn openapi_paths_keep_variable_names() {
        let template = PathTemplate::parse("/v1/campaigns/{campaign.id}").expect("template");
        assert_eq!(template.openapi_path(), "/v1/campaigns/{campaign.id}");
        assert_eq!(template.literal_count(), 2);
    }
}
