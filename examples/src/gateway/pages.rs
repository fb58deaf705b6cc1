//! The HTML pages: home (servers, profiles allowed for the user's VOs, start and stop), the
//! spawn progress page (fed by the progress event stream), errors. Every value is escaped;
//! no page ever shows a token.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Gateway;
use super::servers::{Phase, Started, server_prefix, url_segment};

/// HTML-escapes `s` (egi-monitoring's status page escaper, the same rules).
pub use egi_monitoring::status::escape_html as escape;

/// A small page builder.
#[derive(Debug)]
pub struct Page {
    title: String,
    body: String,
    status: StatusCode,
}

impl Page {
    /// A page with a title.
    pub fn new(title: &str) -> Self {
        Page {
            title: title.to_owned(),
            body: String::new(),
            status: StatusCode::OK,
        }
    }

    /// A paragraph of text.
    #[must_use]
    pub fn text(mut self, text: &str) -> Self {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
        self
    }

    /// A link.
    #[must_use]
    pub fn link(mut self, href: &str, text: &str) -> Self {
        let _ = write!(
            self.body,
            "<p><a href=\"{}\">{}</a></p>",
            escape(href),
            escape(text)
        );
        self
    }

    /// Trusted HTML (built from escaped parts).
    #[must_use]
    pub fn html(mut self, html: &str) -> Self {
        self.body.push_str(html);
        self
    }

    /// The status code.
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}\
             .failed{{color:#a00}} progress{{width:100%}}</style></head>\
             <body><h1>{t}</h1>{b}</body></html>",
            t = escape(&self.title),
            b = self.body
        );
        (
            self.status,
            [(
                "content-security-policy",
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'",
            )],
            Html(html),
        )
            .into_response()
    }
}

/// An error page.
pub fn error(status: StatusCode, title: &str, text: &str) -> Response {
    Page::new(title).text(text).status(status).into_response()
}

fn login_redirect(gw: &Gateway, next: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("{}hub/login?next={next}", gw.config.base_path())).into_response()
}

/// `GET /hub/home`.
pub async fn home(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let base = gw.config.base_path().to_owned();
    let Some(session) = gw.cookies.session(&headers) else {
        return login_redirect(&gw, &format!("{base}hub/home"));
    };
    let Some(user) = gw.servers.user(&session.user) else {
        return login_redirect(&gw, &format!("{base}hub/home"));
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<p>Logged in as <b>{}</b>{}. <a href=\"{base}hub/logout\">Log out</a></p>",
        escape(&user.user.name),
        user.user
            .primary_group
            .as_deref()
            .map(|g| format!(" (VO {})", escape(g)))
            .unwrap_or_default()
    );
    if matches!(
        gw.tokens.freshness(&user.user.name),
        Some(egi_checkin::Freshness::LoginNeeded)
    ) {
        let _ = write!(
            html,
            "<p class=\"failed\">Your Check-in session has ended: <a href=\"{base}hub/login\">log in again</a> so your servers get fresh tokens.</p>"
        );
    }
    html.push_str("<h2>Servers</h2><ul>");
    for (name, server) in &user.servers {
        let label = if name.is_empty() { "default" } else { name };
        let prefix = server_prefix(&base, &user.user.name, name);
        let state = match server.phase() {
            Phase::Running => format!("running: <a href=\"{}\">open</a>", escape(&prefix)),
            Phase::Starting => format!(
                "starting: <a href=\"{base}hub/spawn-pending/{}/{}\">progress</a>",
                escape(&url_segment(&user.user.name)),
                escape(&url_segment(name))
            ),
            Phase::Stopping => "stopping".to_owned(),
            Phase::Failed(reason) => {
                format!("<span class=\"failed\">failed: {}</span>", escape(&reason))
            }
        };
        let _ = write!(
            html,
            "<li>{} — {state} <form method=\"post\" action=\"{base}hub/stop\" style=\"display:inline\">\
             <input type=\"hidden\" name=\"server\" value=\"{}\"><button>Stop</button></form></li>",
            escape(label),
            escape(name)
        );
    }
    html.push_str("</ul><h2>Start a server</h2>");
    let _ = write!(html, "<form method=\"post\" action=\"{base}hub/spawn\">");
    let profiles: Vec<_> = gw
        .config
        .spawner
        .profile_list
        .iter()
        .filter(|p| p.visible_to(&user.user.groups))
        .collect();
    if gw.config.spawner.profile_list.is_empty() {
        html.push_str("<p>The default environment.</p>");
    } else if profiles.is_empty() {
        html.push_str("<p class=\"failed\">No profile is open to your VOs.</p>");
    } else {
        for (i, p) in profiles.iter().enumerate() {
            let _ = write!(
                html,
                "<p><label><input type=\"radio\" name=\"profile\" value=\"{}\"{}> <b>{}</b> {}</label></p>",
                escape(&p.slug()),
                if i == 0 { " checked" } else { "" },
                escape(&p.display_name),
                escape(&p.description)
            );
        }
    }
    html.push_str("<p><label>Server name (empty for the default) <input name=\"server\" pattern=\"[A-Za-z0-9_-]*\"></label></p><button>Start</button></form>");
    Page::new("Notebooks").html(&html).into_response()
}

/// The start form.
#[derive(Debug, Deserialize)]
pub struct SpawnForm {
    /// The profile slug.
    #[serde(default)]
    pub profile: Option<String>,
    /// The server name.
    #[serde(default)]
    pub server: String,
}

/// `POST /hub/spawn`: start, then show the progress page.
pub async fn spawn(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Form(form): Form<SpawnForm>,
) -> Response {
    let base = gw.config.base_path().to_owned();
    let Some(session) = gw.cookies.session(&headers) else {
        return login_redirect(&gw, &format!("{base}hub/home"));
    };
    if !form
        .server
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad server name",
            "Use letters, digits, '-' and '_'.",
        );
    }
    let mut options = serde_json::Map::new();
    if let Some(profile) = form.profile.filter(|p| !p.is_empty()) {
        options.insert("profile".into(), serde_json::Value::String(profile));
    }
    match gw.start_server(&session.user, &form.server, options).await {
        Ok(Started::AlreadyRunning) => {
            Redirect::to(&server_prefix(&base, &session.user, &form.server)).into_response()
        }
        Ok(Started::Pending) => Redirect::to(&format!(
            "{base}hub/spawn-pending/{}/{}",
            url_segment(&session.user),
            url_segment(&form.server)
        ))
        .into_response(),
        Err(e) => error(StatusCode::CONFLICT, "Cannot start", &e.to_string()),
    }
}

/// `POST /hub/stop`.
pub async fn stop(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Form(form): Form<SpawnForm>,
) -> Response {
    let base = gw.config.base_path().to_owned();
    let Some(session) = gw.cookies.session(&headers) else {
        return login_redirect(&gw, &format!("{base}hub/home"));
    };
    match gw.servers.stop(&session.user, &form.server).await {
        Ok(()) => Redirect::to(&format!("{base}hub/home")).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "Cannot stop", &e.to_string()),
    }
}

/// `GET /hub/spawn-pending/{user}/{server}` (and without the server): the progress page,
/// reading `/hub/api/users/{user}/server[s/{server}]/progress` with an `EventSource`.
pub async fn spawn_pending(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(path): Path<Vec<String>>,
) -> Response {
    let base = gw.config.base_path().to_owned();
    let (user, server) = match path.as_slice() {
        [user] => (user.clone(), String::new()),
        [user, server] => (user.clone(), server.clone()),
        _ => return error(StatusCode::NOT_FOUND, "Not found", "No such page."),
    };
    let Some(session) = gw.cookies.session(&headers) else {
        return login_redirect(&gw, &format!("{base}hub/home"));
    };
    if session.user != user {
        return error(
            StatusCode::FORBIDDEN,
            "Not yours",
            "This is another user's server.",
        );
    }
    let api = if server.is_empty() {
        format!("{base}hub/api/users/{}/server/progress", url_segment(&user))
    } else {
        format!(
            "{base}hub/api/users/{}/servers/{}/progress",
            url_segment(&user),
            url_segment(&server)
        )
    };
    let html = format!(
        "<progress id=\"bar\" max=\"100\" value=\"0\"></progress><ul id=\"log\"></ul>\
         <script>\
         const log=document.getElementById('log'),bar=document.getElementById('bar');\
         const es=new EventSource({api});\
         es.onmessage=(m)=>{{const e=JSON.parse(m.data);bar.value=e.progress||0;\
         const li=document.createElement('li');li.textContent=e.message||'';\
         if(e.failed){{li.className='failed';es.close();}}log.appendChild(li);\
         if(e.ready){{es.close();window.location=e.url;}}}};\
         es.onerror=()=>es.close();\
         </script><p><a href=\"{base}hub/home\">Home</a></p>",
        // A JSON string is a JavaScript string literal; the segments are percent-encoded, so
        // no `</script>` can appear in it.
        api = serde_json::to_string(&api).unwrap_or_default()
    );
    Page::new("Starting your server")
        .html(&html)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
