//! The schema's descriptions as `kubectl explain` prints them.
//!
//! Doc comments arrive with the line breaks of the source (wrapped at 100 columns), and
//! `kubectl explain` keeps them, so sentences break mid-way at a width unrelated to the
//! terminal's. [`reflow`] joins each paragraph into one line and lets the terminal wrap it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;

use super::children;

/// Reflows every description in `schema` and below.
pub(super) fn reflow_all(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = reflow(description);
    }
    for child in children(schema) {
        reflow_all(child);
    }
}

/// Removes every description in `schema` and below.
pub(super) fn strip_all(schema: &mut JSONSchemaProps) {
    schema.description = None;
    for child in children(schema) {
        strip_all(child);
    }
}

/// `text` with the lines of each paragraph joined by single spaces. Paragraphs stay apart
/// (one blank line between them) and each list item (`- `, `* `, `1. `) keeps its own line,
/// with its wrapped continuation lines joined to it.
pub fn reflow(text: &str) -> String {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let mut in_paragraph = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            in_paragraph = false;
            continue;
        }
        if !in_paragraph {
            paragraphs.push(Vec::new());
            in_paragraph = true;
        }
        let Some(lines) = paragraphs.last_mut() else {
            continue;
        };
        match lines.last_mut() {
            Some(last) if !is_list_item(line) => {
                last.push(' ');
                last.push_str(line);
            }
            _ => lines.push(line.to_owned()),
        }
    }
    paragraphs
        .iter()
        .map(|lines| lines.join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Whether `line` (trimmed) starts a Markdown list item: `- `, `* `, `+ ` or `12. `/`12) `.
fn is_list_item(line: &str) -> bool {
    if ["- ", "* ", "+ "]
        .iter()
        .any(|bullet| line.starts_with(bullet))
    {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && [". ", ") "]
            .iter()
            .any(|end| line[digits..].starts_with(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflow_table() {
        let cases = [
            ("one line stays", "Count of pods.", "Count of pods."),
            (
                "wrapped lines join with one space",
                "Number of active pods that must\n  match the selector.\nPods count too.",
                "Number of active pods that must match the selector. Pods count too.",
            ),
            (
                "a blank line keeps paragraphs apart",
                "First\nparagraph.\n\nSecond\nparagraph.",
                "First paragraph.\n\nSecond paragraph.",
            ),
            (
                "several blank lines are one break; edges are trimmed",
                "\nFirst.\n\n\n   \nSecond.\n",
                "First.\n\nSecond.",
            ),
            (
                "list items keep their lines; continuations join the item",
                "Conditions:\n- Ready: converged\n  and ready\n- Contended\n* starred\n+ plus",
                "Conditions:\n- Ready: converged and ready\n- Contended\n* starred\n+ plus",
            ),
            (
                "numbered items, with . or )",
                "Steps:\n1. create\n   pods\n2) delete pods",
                "Steps:\n1. create pods\n2) delete pods",
            ),
            (
                "a number or dash inside a sentence is no item",
                "At most\n100000 pods;\n-1 is refused, and\n3.5 too.",
                "At most 100000 pods; -1 is refused, and 3.5 too.",
            ),
            ("empty", "", ""),
        ];
        for (name, input, want) in cases {
            assert_eq!(reflow(input), want, "{name}");
        }
    }

    #[test]
    fn reflow_is_idempotent() {
        let once = reflow("A\nb.\n\n- c\n  d\n- e");
        assert_eq!(reflow(&once), once);
    }
}
