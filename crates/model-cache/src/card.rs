//! Model cards: a repo's `README.md` as the app shows it.
//!
//! A card is Markdown with an optional YAML front matter (`license: mit`, `license_name`,
//! `license_link`, `tags`, …) that the Hub reads for the repo's metadata. [`parse`] splits the
//! two, reads the few front-matter keys the app shows, and renders the Markdown to HTML that is
//! safe to put in the window:
//!
//! - raw HTML in the Markdown is dropped (never rendered, never run);
//! - images become links to the image (a remote image is never loaded: it would tell its host
//!   who reads which card, and the app's content policy forbids it anyway);
//! - the result goes through `ammonia`, which keeps a fixed set of tags and attributes, only
//!   `http`, `https` and `mailto` links, and marks every link `rel="noopener noreferrer
//!   nofollow"`; relative links are made absolute against the repo's page on the Hub, so they
//!   open there (the app opens links in the system browser).

use std::collections::HashSet;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};

/// What the app shows of a card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The `license` key of the front matter (`mit`, `apache-2.0`, `other`).
    pub license: Option<String>,
    /// `license_name`, for `license: other`.
    pub license_name: Option<String>,
    /// `license_link`, made absolute like the card's links.
    pub license_link: Option<String>,
    /// The card's body as sanitised HTML.
    pub html: String,
}

/// Splits `markdown` into its front matter (without the `---` lines) and its body.
pub fn split_front_matter(markdown: &str) -> (Option<&str>, &str) {
    let text = markdown.strip_prefix('\u{feff}').unwrap_or(markdown);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (None, text);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    (None, text)
}

/// The value of a top-level scalar `key` in a YAML front matter (quotes removed); lists and
/// nested maps are not read.
fn front_matter_value(front: &str, key: &str) -> Option<String> {
    front.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// Reads a card: its license keys and its body as safe HTML. `base` is the repo's page on the
/// Hub with a trailing slash (`https://huggingface.co/org/name/blob/main/`); relative links are
/// resolved against it.
pub fn parse(markdown: &str, base: &str) -> Card {
    let (front, body) = split_front_matter(markdown);
    let base = ammonia::Url::parse(base).ok();
    let absolute = |link: String| match &base {
        Some(base) => base.join(&link).map(|u| u.to_string()).unwrap_or(link),
        None => link,
    };
    Card {
        license: front.and_then(|f| front_matter_value(f, "license")),
        license_name: front.and_then(|f| front_matter_value(f, "license_name")),
        license_link: front
            .and_then(|f| front_matter_value(f, "license_link"))
            .map(absolute),
        html: render(body, base),
    }
}

/// Markdown to sanitised HTML (see the module's documentation).
fn render(markdown: &str, base: Option<ammonia::Url>) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut in_image = false;
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(_) | Event::InlineHtml(_) => None,
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            in_image = true;
            Some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        Event::End(TagEnd::Image) => {
            in_image = false;
            Some(Event::End(TagEnd::Link))
        }
        // The alt text of an image is the link's text; an image without one still gets words.
        Event::Text(text) if in_image && text.trim().is_empty() => {
            Some(Event::Text(CowStr::from("image")))
        }
        other => Some(other),
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    let mut builder = ammonia::Builder::default();
    builder
        .rm_tags(["img"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"));
    if let Some(base) = base {
        builder.url_relative(ammonia::UrlRelative::RewriteWithBase(base));
    } else {
        builder.url_relative(ammonia::UrlRelative::Deny);
    }
    builder.clean(&html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://huggingface.co/org/name/blob/main/";

    #[test]
    fn the_front_matter_gives_the_license_and_is_not_shown() {
        let card = parse(
            "---\nlicense: apache-2.0\nlicense_link: LICENSE\ntags: [gguf]\n---\n# Title\n\nText.\n",
            BASE,
        );
        assert_eq!(card.license.as_deref(), Some("apache-2.0"));
        assert_eq!(
            card.license_link.as_deref(),
            Some("https://huggingface.co/org/name/blob/main/LICENSE")
        );
        assert!(card.html.contains("<h1>Title</h1>"), "{}", card.html);
        assert!(!card.html.contains("license"), "{}", card.html);
        let bare = parse("# Only a title\n", BASE);
        assert_eq!(bare.license, None);
        assert!(bare.html.contains("Only a title"));
    }

    #[test]
    fn scripts_raw_html_and_remote_images_never_reach_the_window() {
        let card = parse(
            "Hello <script>alert(1)</script> world\n\n\
             <div onclick=\"steal()\"><iframe src=\"https://evil.test\"></iframe></div>\n\n\
             ![a chart](https://tracker.test/pixel.png)\n\n\
             [click](javascript:alert(1)) [docs](https://example.com/docs) [config](config.json)\n\n\
             | a | b |\n|---|---|\n| 1 | 2 |\n",
            BASE,
        );
        let html = card.html;
        for banned in ["<script", "<iframe", "onclick", "<img", "javascript:"] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
        assert!(
            html.contains(r#"<a href="https://tracker.test/pixel.png" rel="noopener noreferrer nofollow">a chart</a>"#),
            "an image is a link to it: {html}"
        );
        assert!(
            html.contains(r#"href="https://example.com/docs""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="https://huggingface.co/org/name/blob/main/config.json""#),
            "relative links open on the Hub: {html}"
        );
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("Hello") && html.contains("world"), "{html}");
    }
}
