//! The portal's pages, server-rendered with maud (every value escaped unless marked otherwise;
//! the one thing marked is the QR code's SVG, which is drawn here). One stylesheet, one small
//! script for what needs it (Plex polling, copy buttons); everything else works without
//! JavaScript.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::portal::links::{LinkUrls, NewLink};
use crate::portal::people::Person;

pub const STYLESHEET: &str = include_str!("static/portal.css");
pub const SCRIPT: &str = include_str!("static/portal.js");

fn page(title: &str, heading: &str, signed_in: Option<&Person>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (heading) " · " (title) }
                link rel="stylesheet" href="/static/portal.css";
                script src="/static/portal.js" defer {}
            }
            body {
                header {
                    span.brand { (title) }
                    @if let Some(person) = signed_in {
                        nav {
                            span.who { (person.name) " · " (person.source) }
                            a href="/" { "Streams" }
                            @if person.admin { a href="/admin" { "Admin" } }
                            a href="/mfa/enroll" { "Two-factor" }
                            form method="post" action="/logout" {
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (heading) } (body) }
            }
        }
    }
    .into_string()
}

/// What the sign-in page offers.
pub struct LoginChoices<'a> {
    pub password: bool,
    pub oidc: Option<&'a str>,
    pub plex: bool,
}

pub fn login(title: &str, choices: &LoginChoices, message: Option<&str>) -> String {
    page(
        title,
        "Sign in",
        None,
        html! {
            @if let Some(m) = message { p.error role="alert" { (m) } }
            @if choices.password {
                form.card method="post" action="/login" {
                    label { "Name" input name="username" autocomplete="username" required autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            }
            @if let Some(name) = choices.oidc {
                p { a.button href="/login/oidc" { "Sign in with " (name) } }
            }
            @if choices.plex {
                p {
                    button #plex type="button" { "Sign in with Plex" }
                    span #plex-status {}
                }
                noscript { p { "Signing in with Plex needs JavaScript." } }
            }
        },
    )
}

pub fn mfa(title: &str, message: Option<&str>) -> String {
    page(
        title,
        "Second factor",
        None,
        html! {
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form.card method="post" action="/mfa" {
                label { "Code from your authenticator app, or a recovery code"
                    input name="code" autocomplete="one-time-code" inputmode="text" required autofocus; }
                button type="submit" { "Continue" }
            }
            form method="post" action="/logout" { button.link type="submit" { "Cancel" } }
        },
    )
}

/// The enrollment page: the QR code, the secret typed in by hand, and the first code.
pub fn enroll(
    title: &str,
    person: Option<&Person>,
    enrolled: bool,
    material: Option<(&str, &str)>,
    message: Option<&str>,
) -> String {
    page(
        title,
        "Two-factor sign-in",
        person,
        html! {
            @if let Some(m) = message { p.error role="alert" { (m) } }
            @match material {
                Some((secret, qr)) => {
                    p { "Scan this code with an authenticator app, or type the key in." }
                    figure.qr { (PreEscaped(qr)) }
                    p { "Key: " code #secret { (secret) } }
                    form.card method="post" action="/mfa/enroll/verify" {
                        label { "The code the app shows now" input name="code" autocomplete="one-time-code" required autofocus; }
                        button type="submit" { "Turn on" }
                    }
                }
                None => {
                    @if enrolled {
                        p { "Two-factor sign-in is on. Setting it up again needs a current code or a recovery code." }
                    } @else {
                        p { "Add a second step to signing in: a code from an app on your phone." }
                    }
                    form.card method="post" action="/mfa/enroll" {
                        @if enrolled {
                            label { "Current code" input name="code" autocomplete="one-time-code" required; }
                        }
                        button type="submit" { @if enrolled { "Set up again" } @else { "Set up" } }
                    }
                }
            }
        },
    )
}

pub fn recovery_codes(title: &str, person: Option<&Person>, codes: &[String]) -> String {
    page(
        title,
        "Recovery codes",
        person,
        html! {
            p { "Two-factor sign-in is on. Keep these codes somewhere safe: each signs you in once if you lose your phone. They are not shown again." }
            ol.codes { @for c in codes { li { code { (c) } } } }
            p { a.button href="/" { "Continue" } }
        },
    )
}

/// One row of the streams page.
pub struct Stream {
    pub path: String,
    pub read: bool,
    pub publish: bool,
}

/// A link already made, as listed.
pub struct LinkRow {
    pub id: String,
    pub action: String,
    pub path: String,
    pub expires_at: Option<String>,
}

pub struct StreamsPage<'a> {
    pub person: &'a Person,
    pub streams: Vec<Stream>,
    /// Patterns the person holds (`~regex`, any path): a path may be typed in.
    pub patterns: Vec<(String, String)>,
    pub links: Vec<LinkRow>,
    pub new_link: Option<(NewLink, LinkUrls)>,
    /// A player for this link: the URL of MediaMTX's page.
    pub player: Option<String>,
    pub mfa_offered: bool,
    pub mfa_enrolled: bool,
    pub note: Option<String>,
}

fn url_rows(urls: &LinkUrls) -> Markup {
    let rows = [
        ("RTSP", &urls.rtsp),
        ("HLS", &urls.hls),
        ("WebRTC", &urls.webrtc),
        ("SRT", &urls.srt),
        ("RTMP", &urls.rtmp),
    ];
    html! {
        dl.urls {
            @for (name, url) in rows {
                @if let Some(url) = url {
                    dt { (name) }
                    dd { input.copy readonly value=(url) aria-label=(name); button.copy type="button" { "Copy" } }
                }
            }
        }
    }
}

pub fn streams(title: &str, p: &StreamsPage) -> String {
    page(
        title,
        "Your streams",
        Some(p.person),
        html! {
            @if let Some(note) = &p.note { p.note { (note) } }
            @if p.mfa_offered && !p.mfa_enrolled {
                p.note { "Protect your account: " a href="/mfa/enroll" { "turn on two-factor sign-in" } "." }
            }
            @if let Some((link, urls)) = &p.new_link {
                section.card.new-link {
                    h2 { "Link for " (link.path) " (" (link.action) ")" }
                    p { "Shown once. Anyone with it can " (if link.action == "publish" { "publish to" } else { "watch" }) " this path until it expires or you revoke it." }
                    (url_rows(urls))
                    @if let Some(player) = &p.player {
                        iframe.player src=(player) allow="autoplay; fullscreen" title="Player" {}
                    }
                }
            }
            @if p.streams.is_empty() && p.patterns.is_empty() {
                p { "You have no streams yet." }
            }
            @if !p.streams.is_empty() {
                table.streams {
                    thead { tr { th { "Path" } th { "" } } }
                    tbody {
                        @for s in &p.streams {
                            tr {
                                td { code { (s.path) } }
                                td.actions {
                                    @if s.read {
                                        form method="post" action="/links" {
                                            input type="hidden" name="action" value="read";
                                            input type="hidden" name="path" value=(s.path);
                                            button name="play" value="1" type="submit" { "Watch" }
                                            button type="submit" { "Link" }
                                        }
                                    }
                                    @if s.publish {
                                        form method="post" action="/links" {
                                            input type="hidden" name="action" value="publish";
                                            input type="hidden" name="path" value=(s.path);
                                            button type="submit" { "Publish link" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !p.patterns.is_empty() {
                section.card {
                    h2 { "Another path" }
                    p { "You may also use: "
                        @for (i, (action, pattern)) in p.patterns.iter().enumerate() {
                            @if i > 0 { ", " }
                            (action) " " code { (if pattern.is_empty() { "any path" } else { pattern }) }
                        }
                    }
                    form method="post" action="/links" {
                        label { "Path" input name="path" required; }
                        select name="action" {
                            @for action in ["read", "publish", "playback"] {
                                @if p.patterns.iter().any(|(a, _)| a == action) {
                                    option value=(action) { (action) }
                                }
                            }
                        }
                        button type="submit" { "Make link" }
                    }
                }
            }
            @if !p.links.is_empty() {
                h2 { "Your links" }
                table.links {
                    thead { tr { th { "Path" } th { "Action" } th { "Expires" } th { "" } } }
                    tbody {
                        @for l in &p.links {
                            tr {
                                td { code { (l.path) } }
                                td { (l.action) }
                                td { (l.expires_at.as_deref().unwrap_or("never")) }
                                td { form method="post" action={ "/links/" (l.id) "/revoke" } { button type="submit" { "Revoke" } } }
                            }
                        }
                    }
                }
            }
            form.everywhere method="post" action="/logout" {
                input type="hidden" name="everywhere" value="1";
                button.link type="submit" { "Sign out everywhere (ends every session and revokes every link)" }
            }
        },
    )
}

/// A person's web sessions and links, and MediaMTX's live sessions, for administrators.
pub struct AdminPage<'a> {
    pub person: &'a Person,
    /// (person key, name, source, signed in at)
    pub signed_in: Vec<(String, String, String, String)>,
    /// (identity, protocol, action, path, since)
    pub watching: Vec<(String, String, String, String, String)>,
    /// (owner, name, action, path, expires)
    pub links: Vec<(String, String, String, String, String)>,
    pub note: Option<String>,
}

pub fn admin(title: &str, p: &AdminPage) -> String {
    let revoke = |person: &str| {
        html! {
            form method="post" action="/admin/revoke" {
                input type="hidden" name="person" value=(person);
                button type="submit" { "Sign out and revoke links" }
            }
        }
    };
    page(
        title,
        "Administration",
        Some(p.person),
        html! {
            @if let Some(note) = &p.note { p.note { (note) } }
            h2 { "Signed in" }
            table {
                thead { tr { th { "Person" } th { "Source" } th { "Since" } th { "" } } }
                tbody { @for (key, name, source, since) in &p.signed_in {
                    tr { td { (name) } td { (source) } td { (since) } td { (revoke(key)) } }
                } }
            }
            h2 { "Watching and publishing" }
            @if p.watching.is_empty() { p { "Nobody, as far as mtx-auth tracks sessions." } }
            @else {
                table {
                    thead { tr { th { "Who" } th { "Protocol" } th { "Action" } th { "Path" } th { "Since" } } }
                    tbody { @for (who, proto, action, path, since) in &p.watching {
                        tr { td { (who) } td { (proto) } td { (action) } td { code { (path) } } td { (since) } }
                    } }
                }
            }
            h2 { "Links in force" }
            table {
                thead { tr { th { "Owner" } th { "Name" } th { "Action" } th { "Path" } th { "Expires" } th { "" } } }
                tbody { @for (owner, name, action, path, expires) in &p.links {
                    tr { td { (owner) } td { (name) } td { (action) } td { code { (path) } } td { (expires) } td { (revoke(owner)) } }
                } }
            }
        },
    )
}

pub fn error(title: &str, heading: &str, message: &str) -> String {
    page(
        title,
        heading,
        None,
        html! { p.error { (message) } p { a href="/" { "Back" } } },
    )
}
