//! A small Markdown subset to HTML, for the runbooks page: what `docs/runbooks.md`
//! uses and nothing more. Blocks: ATX headings (each with the id GitHub gives it, so
//! `#fragment` links work on both), paragraphs, `-`/`*` and `1.` lists whose items may
//! continue on indented lines, fenced code blocks. Inline: `` `code` ``,
//! `[text](href)`, `**strong**`, `*emphasis*`. Anything else is text.
//!
//! Every piece of text and every attribute goes through [`escape`], raw HTML included
//! (it is shown, not interpreted), and a link whose target has a scheme other than
//! http(s) or mailto stays text, so no input can put markup or script on the page.

use std::fmt::Write as _;

use super::escape;
use crate::rules::runbooks::anchor;

/// The HTML of `markdown`.
pub(crate) fn to_html(markdown: &str) -> String {
    let mut out = String::new();
    let mut lines = markdown.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_end();
        if trimmed.trim().is_empty() {
            continue;
        }
        if trimmed.trim_start().starts_with("```") {
            out.push_str("<pre><code>");
            for code in lines.by_ref() {
                if code.trim_start().starts_with("```") {
                    break;
                }
                out.push_str(&escape(code));
                out.push('\n');
            }
            out.push_str("</code></pre>\n");
        } else if let Some((level, text)) = heading(trimmed) {
            let _ = writeln!(
                out,
                "<h{level} id=\"{}\">{}</h{level}>",
                escape(&anchor(text)),
                inline(text)
            );
        } else if let Some((ordered, _)) = item(trimmed) {
            let tag = if ordered { "ol" } else { "ul" };
            let _ = writeln!(out, "<{tag}>");
            let mut current = item(trimmed).map(|(_, t)| t.to_string());
            while let Some(text) = current.take() {
                let mut text = text;
                // Indented lines continue the item; the next marker starts another.
                while let Some(next) = lines.peek() {
                    if next.starts_with([' ', '\t']) && !next.trim().is_empty() {
                        text.push(' ');
                        text.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                let _ = writeln!(out, "<li>{}</li>", inline(&text));
                if let Some((o, t)) = lines.peek().and_then(|l| item(l.trim_end()))
                    && o == ordered
                {
                    current = Some(t.to_string());
                    lines.next();
                }
            }
            let _ = writeln!(out, "</{tag}>");
        } else {
            let mut text = trimmed.trim().to_string();
            while let Some(next) = lines.peek() {
                let next = next.trim_end();
                if next.trim().is_empty()
                    || heading(next).is_some()
                    || item(next).is_some()
                    || next.trim_start().starts_with("```")
                {
                    break;
                }
                text.push('\n');
                text.push_str(next.trim());
                lines.next();
            }
            let _ = writeln!(out, "<p>{}</p>", inline(&text));
        }
    }
    out
}

/// `## Text` -> (2, "Text").
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let text = line[level..].strip_prefix(' ')?;
    (1..=6).contains(&level).then_some((level, text.trim()))
}

/// A list item's marker: `- x`, `* x` (unordered) or `12. x` (ordered), at the start of
/// the line.
fn item(line: &str) -> Option<(bool, &str)> {
    if let Some(t) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return Some((false, t));
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0)
        .then(|| line[digits..].strip_prefix(". "))
        .flatten()
        .map(|t| (true, t))
}

/// Inline markup of one block's text, escaped.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`'
            && let Some(end) = rest[1..].find('`')
        {
            let _ = write!(out, "<code>{}</code>", escape(&rest[1..1 + end]));
            rest = &rest[end + 2..];
        } else if c == '['
            && let Some((label, href, len)) = link(rest)
        {
            if allowed(href) {
                let _ = write!(out, "<a href=\"{}\">{}</a>", escape(href), inline(label));
            } else {
                out.push_str(&escape(&rest[..len]));
            }
            rest = &rest[len..];
        } else if let Some(inner) = rest.strip_prefix("**")
            && let Some(end) = inner.find("**").filter(|&e| e > 0)
        {
            let _ = write!(out, "<strong>{}</strong>", inline(&inner[..end]));
            rest = &inner[end + 2..];
        } else if let Some(inner) = rest.strip_prefix('*')
            && !inner.starts_with([' ', '*'])
            && let Some(end) = inner.find('*').filter(|&e| e > 0)
        {
            let _ = write!(out, "<em>{}</em>", inline(&inner[..end]));
            rest = &inner[end + 1..];
        } else {
            out.push_str(&escape(&rest[..c.len_utf8()]));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `[label](href)` at the start of `s`: the label, the href and the length taken.
fn link(s: &str) -> Option<(&str, &str, usize)> {
    let close = s.find("](")?;
    let label = &s[1..close];
    if label.contains('[') {
        return None;
    }
    let after = &s[close + 2..];
    let end = after.find(')')?;
    let href = &after[..end];
    (!href.is_empty() && !href.contains(char::is_whitespace)).then_some((
        label,
        href,
        close + 2 + end + 1,
    ))
}

/// Hrefs the page may carry: relative ones, and http(s) and mailto. `javascript:`
/// and every other scheme stay text.
fn allowed(href: &str) -> bool {
    match href.split_once(':') {
        None => true,
        // A colon after a path or fragment character is no scheme.
        Some((before, _)) if before.contains(['/', '#', '?']) => true,
        Some((scheme, _)) => ["http", "https", "mailto"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        let md = "# Title\n\nOne line\nand its continuation.\n\n## Memory Used: High\n\
                  - first item\n  continued here\n- second\n\n1. one\n2. two\n\n\
                  ```sh\nls <dir> && echo \"x\"\n## not a heading\n```\nafter\n";
        assert_eq!(
            to_html(md),
            "<h1 id=\"title\">Title</h1>\n\
             <p>One line\nand its continuation.</p>\n\
             <h2 id=\"memory-used-high\">Memory Used: High</h2>\n\
             <ul>\n<li>first item continued here</li>\n<li>second</li>\n</ul>\n\
             <ol>\n<li>one</li>\n<li>two</li>\n</ol>\n\
             <pre><code>ls &lt;dir&gt; &amp;&amp; echo &quot;x&quot;\n## not a heading\n</code></pre>\n\
             <p>after</p>\n"
        );
    }

    #[test]
    fn a_paragraph_ends_at_a_list_or_heading() {
        assert_eq!(
            to_html("text\n- item\n### Sub\nmore"),
            "<p>text</p>\n<ul>\n<li>item</li>\n</ul>\n<h3 id=\"sub\">Sub</h3>\n<p>more</p>\n"
        );
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("**Check** the *panel*, run `top -o cpu` and see [CPU](#cpu-busy)."),
            "<strong>Check</strong> the <em>panel</em>, run <code>top -o cpu</code> \
             and see <a href=\"#cpu-busy\">CPU</a>."
        );
        assert_eq!(
            inline("[a `b`](docs#x) and [c](https://example.org/?a=1&b=2)"),
            "<a href=\"docs#x\">a <code>b</code></a> and \
             <a href=\"https://example.org/?a=1&amp;b=2\">c</a>"
        );
        // Unmatched markers are text.
        assert_eq!(inline("2 * 3 and `x and [y"), "2 * 3 and `x and [y");
        assert_eq!(inline("**"), "**");
    }

    #[test]
    fn nothing_reaches_the_page_unescaped() {
        let md = "## <script>alert(1)</script>\n\n<img src=x onerror=alert(1)> & \"q\" 'a'\n\n\
                  - `<b>` [<i>x</i>](/a\"onmouseover=\"x) [y](javascript:alert(1))\n";
        let html = to_html(md);
        for raw in [
            "<script",
            "<img",
            "<b>",
            "<i>",
            "\"onmouseover",
            "href=\"javascript",
        ] {
            assert!(!html.contains(raw), "{raw} reached the page: {html}");
        }
        assert!(
            html.contains("<h2 id=\"scriptalert1script\">&lt;script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot; &#39;a&#39;")
        );
        assert!(html.contains("<code>&lt;b&gt;</code>"), "{html}");
        assert!(
            html.contains("<a href=\"/a&quot;onmouseover=&quot;x\">&lt;i&gt;x&lt;/i&gt;</a>"),
            "{html}"
        );
        assert!(html.contains("[y](javascript:alert(1))"), "{html}");
    }

    #[test]
    fn the_shipped_runbooks_render_with_an_id_per_section() {
        let md = crate::rules::runbooks::MARKDOWN;
        let html = to_html(md);
        for h in crate::rules::runbooks::sections(md) {
            let id = anchor(h);
            assert!(
                html.contains(&format!("<h2 id=\"{id}\">{}</h2>", escape(h))),
                "{h}"
            );
        }
        // Every in-page link names a heading.
        for part in html.split("href=\"#").skip(1) {
            let id = &part[..part.find('"').unwrap()];
            assert!(
                html.contains(&format!(" id=\"{id}\"")),
                "#{id} names no heading"
            );
        }
        assert!(
            !html.contains("**") && !html.contains("](#"),
            "markup left over"
        );
    }
}
