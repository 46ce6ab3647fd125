//! Reply templates: `{{ size }}` is replaced by the visitor's preference of that name, and
//! `{{#budget}}, up to {{ budget }} €{{/budget}}` is shown only when `budget` is known
//! (`{{^email}}…{{/email}}` only when it is not), as in Mustache. Parsed once at compile time,
//! so a name that no slot or intent can set is an error in the file, not a blank in front of a
//! shopper.

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(String),
    /// Shown when the preference is known (or, `inverted`, when it is not).
    Section {
        name: String,
        inverted: bool,
        parts: Vec<Part>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// The template's own length, about what a rendering takes: room for it at once.
    len: usize,
}

impl Template {
    /// Parses placeholders and sections; the error says what is wrong.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut rest = source;
        let parts = parse_parts(&mut rest, None, 0)?;
        Ok(Template { parts, len: source.len() })
    }

    /// The preference names the template uses.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut names = Vec::new();
        collect_names(&self.parts, &mut names);
        names.into_iter()
    }

    /// Fills in preferences; one that is not known yet renders as empty text.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(self.len);
        render_parts(&self.parts, &lookup, &mut out);
        out
    }
}

/// Sections inside sections, at most this deep (a reply is not a program).
const MAX_DEPTH: usize = 8;

/// Parses until the end of `rest`, or until `{{/name}}` closes the section `open`.
fn parse_parts(rest: &mut &str, open: Option<&str>, depth: usize) -> Result<Vec<Part>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("sections nest at most {MAX_DEPTH} deep"));
    }
    let mut parts = Vec::new();
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("`{{` without a closing `}}`")?;
        let tag = after[..end].trim();
        *rest = &after[end + 2..];
        let (sigil, name) = match tag.chars().next() {
            Some(c @ ('#' | '^' | '/')) => (Some(c), tag[1..].trim()),
            _ => (None, tag),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{{{{ {tag} }}}}` is not a preference name"));
        }
        match sigil {
            None => parts.push(Part::Var(name.to_string())),
            Some('/') if open == Some(name) => return Ok(parts),
            Some('/') => return Err(format!("`{{{{/{name}}}}}` closes a section that is not open")),
            Some(sigil) => {
                let inner = parse_parts(rest, Some(name), depth + 1)?;
                parts.push(Part::Section { name: name.to_string(), inverted: sigil == '^', parts: inner });
            }
        }
    }
    if let Some(name) = open {
        return Err(format!("`{{{{#{name}}}}}` is never closed with `{{{{/{name}}}}}`"));
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
        *rest = "";
    }
    Ok(parts)
}

fn collect_names<'a>(parts: &'a [Part], names: &mut Vec<&'a str>) {
    for part in parts {
        match part {
            Part::Var(name) => names.push(name),
            Part::Section { name, parts, .. } => {
                names.push(name);
                collect_names(parts, names);
            }
            Part::Text(_) => {}
        }
    }
}

fn render_parts<'a>(parts: &[Part], lookup: &impl Fn(&str) -> Option<&'a str>, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Var(name) => out.push_str(lookup(name).unwrap_or("")),
            Part::Section { name, inverted, parts } => {
                if lookup(name).is_some_and(|v| !v.is_empty()) != *inverted {
                    render_parts(parts, lookup, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects() {
        let t = Template::parse("Size {{ size }}, {{colour}}!").expect("parses");
        assert_eq!(t.names().collect::<Vec<_>>(), ["size", "colour"]);
        let rendered = t.render(|n| (n == "size").then_some("42"));
        assert_eq!(rendered, "Size 42, !");
        assert!(Template::parse("{{ size").is_err());
        assert!(Template::parse("{{ a b }}").is_err());
    }

    #[test]
    fn sections_show_only_what_is_known() {
        let t =
            Template::parse("Noted: size {{ size }}{{#budget}}, up to {{ budget }} €{{/budget}}{{^email}}.{{/email}}")
                .expect("parses");
        assert_eq!(t.names().collect::<Vec<_>>(), ["size", "budget", "budget", "email"]);
        assert_eq!(t.render(|n| (n == "size").then_some("42")), "Noted: size 42.");
        let known = |n: &str| match n {
            "size" => Some("42"),
            "budget" => Some("120"),
            "email" => Some("a@example.com"),
            _ => None,
        };
        assert_eq!(t.render(known), "Noted: size 42, up to 120 €");
        assert!(Template::parse("{{#budget}} open").unwrap_err().contains("never closed"));
        assert!(Template::parse("{{/budget}}").unwrap_err().contains("not open"));
        assert!(Template::parse("{{#a}}{{/b}}").is_err());
        assert!(Template::parse(&"{{#a}}".repeat(100)).unwrap_err().contains("nest at most"));
    }
}
