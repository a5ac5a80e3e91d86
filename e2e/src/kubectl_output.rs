//! Reading what `kubectl get` and `kubectl explain` print for people, so scenarios can check
//! it as a user reads it.

use std::collections::BTreeMap;

/// The rows of a `kubectl get` table as `header → cell`. Columns are cut where their header
/// starts (kubectl aligns cells under headers); an empty cell reads `<none>` as kubectl shows.
pub fn table(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns = header_columns(header);
    lines
        .map(|line| {
            columns
                .iter()
                .enumerate()
                .map(|(index, (name, start))| {
                    let end = columns.get(index + 1).map_or(line.len(), |(_, next)| *next);
                    let cell = line.get(*start..end.min(line.len())).unwrap_or("").trim();
                    (name.clone(), cell.to_owned())
                })
                .collect()
        })
        .collect()
}

/// Each header of a table line with the byte offset it starts at.
fn header_columns(header: &str) -> Vec<(String, usize)> {
    let mut columns = Vec::new();
    let mut start = None;
    for (offset, c) in header.char_indices().chain([(header.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(offset),
            (true, Some(begin)) => {
                columns.push((header[begin..offset].to_owned(), begin));
                start = None;
            }
            _ => {}
        }
    }
    columns
}

/// The lines of the `DESCRIPTION:` section of `kubectl explain` output, without their
/// indentation; an empty string separates paragraphs.
pub fn explain_description(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = section(output, "DESCRIPTION:")
        .iter()
        .map(|line| line.trim().to_owned())
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The field names the `FIELDS:` section of `kubectl explain` lists (the lines indented by
/// two spaces: `  labels\t<map[string]string>`).
pub fn explain_fields(output: &str) -> Vec<String> {
    section(output, "FIELDS:")
        .iter()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The lines after `title` up to the next unindented section title.
fn section<'a>(output: &'a str, title: &str) -> Vec<&'a str> {
    output
        .lines()
        .skip_while(|line| line.trim_end() != title)
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' ') || line.starts_with('\t'))
        .collect()
}

/// The lines of a paragraph that end early: a line after which the next line's first word
/// would still have fitted, judged against the longest line (kubectl wraps greedily at a
/// width it chooses, so no line is longer than that width). A description that is one
/// paragraph to kubectl has none; one cut by its source's line breaks has one per break.
pub fn early_breaks(lines: &[String]) -> Vec<String> {
    let width = lines
        .iter()
        .map(|line| line.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .windows(2)
        .filter(|pair| !pair[0].is_empty() && !pair[1].is_empty())
        .filter(|pair| {
            let next_word = pair[1].split_whitespace().next().unwrap_or("");
            pair[0].chars().count() + 1 + next_word.chars().count() <= width
        })
        .map(|pair| pair[0].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: &str = "\
NAME    DESIRED   CURRENT   AGE   AVAILABLE   CONTENDED   IMAGE          SELECTOR
shown   2         2         5s    2           False       busybox:1.36   app=shown
other   1         0         1s    <none>                  nginx          app=other
";

    #[test]
    fn table_cells_are_read_under_their_headers() {
        let rows = table(WIDE);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["NAME"], "shown");
        assert_eq!(rows[0]["IMAGE"], "busybox:1.36");
        assert_eq!(rows[0]["SELECTOR"], "app=shown");
        assert_eq!(rows[1]["AVAILABLE"], "<none>");
        assert_eq!(rows[1]["CONTENDED"], "", "an empty cell stays empty");
        assert!(table("").is_empty());
    }

    const EXPLAIN: &str = "\
GROUP:      scaling.example.com
KIND:       PodScaler
VERSION:    v1

FIELD: metadata <Object>

DESCRIPTION:
    Labels and annotations of the pods. The pods' other metadata (name, owner,
    ...) is set by the operator and the API server.

    Second paragraph.

FIELDS:
  annotations\t<map[string]string>
    Annotations of the pods, copied as they are.

  labels\t<map[string]string>
    Labels of the pods.
";

    #[test]
    fn explain_sections_are_read() {
        assert_eq!(
            explain_description(EXPLAIN),
            [
                "Labels and annotations of the pods. The pods' other metadata (name, owner,",
                "...) is set by the operator and the API server.",
                "",
                "Second paragraph.",
            ]
        );
        assert_eq!(explain_fields(EXPLAIN), ["annotations", "labels"]);
    }

    #[test]
    fn early_breaks_find_source_line_breaks() {
        let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        let greedy = lines("aaaa bbbb cccc\ndddd eeee ffff\ngg\n\nnew paragraph");
        assert!(early_breaks(&greedy).is_empty(), "{greedy:?}");
        let cut = lines("aaaa bbbb cccc\ndd\neeee ffff");
        assert_eq!(early_breaks(&cut), ["dd"]);
    }
}
