//! Reply templates: `{{ size }}` is replaced by the visitor's preference of that name. Parsed
//! once at compile time, so a name that no slot or intent can set is an error in the file, not
//! a blank in front of a shopper.

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `{{ name }}` placeholders; the error says what is wrong.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or("`{{` without a closing `}}`")?;
            let name = after[..end].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{{{{ {name} }}}}` is not a preference name"));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The preference names the template uses.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills in preferences; one that is not known yet renders as empty text.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(lookup(name).unwrap_or("")),
            }
        }
        out
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
}
