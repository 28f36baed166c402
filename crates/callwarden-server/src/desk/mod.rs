//! The supervisors' review desk: server-rendered pages on the HTTP listener. Every read and
//! every act goes through the same `Review` and `BlockList` services as gRPC (the same
//! validation, audit log, chain and role table), called in-process as the signed-in user; the
//! desk only turns forms into requests and answers into pages.
//!
//! Sign-in takes a supervisor's or admin's bearer token, as the API does, and keeps it in an
//! HttpOnly, SameSite=Strict cookie; it is checked again on every request, expiry included.
//! Every form carries a CSRF token bound to that session by an HMAC.

mod chart;
mod pages;
mod session;

use crate::{
    auth::{Authenticator, Principal},
    clock::Clock,
    grpc::{blocklist::BlockListService, review::ReviewService},
    health::PostgresHealth,
    i18n::{Catalogues, Speaker},
};
use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use callwarden_storage::preferences::PreferenceStore;
use hmac::{Hmac, KeyInit, Mac};
use minijinja::Environment;
use serde::Serialize;
use sha2::Sha256;
use std::sync::Arc;

pub use session::Session;

/// Everything the desk's pages need, built once by the composition root.
pub struct Desk {
    /// The services the desk calls, the very ones gRPC serves.
    pub review: Arc<ReviewService>,
    pub blocklist: Arc<BlockListService>,
    /// Signs in and authorizes each call, with the API's role table and rate limits.
    pub auth: Arc<Authenticator>,
    /// While Postgres is away the desk says so at once, as the gRPC services do.
    pub postgres: Arc<PostgresHealth>,
    pub preferences: PreferenceStore,
    pub catalogues: Arc<Catalogues>,
    pub clock: Arc<dyn Clock>,
    /// Keys the CSRF tokens; derived from a secret every replica shares, so a form rendered by
    /// one replica may be posted to another.
    pub csrf_key: Vec<u8>,
    /// Cookies are `Secure` when the listener speaks TLS.
    pub secure_cookies: bool,
    templates: Environment<'static>,
}

impl Desk {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        review: Arc<ReviewService>,
        blocklist: Arc<BlockListService>,
        auth: Arc<Authenticator>,
        postgres: Arc<PostgresHealth>,
        preferences: PreferenceStore,
        catalogues: Arc<Catalogues>,
        clock: Arc<dyn Clock>,
        shared_secret: &str,
        secure_cookies: bool,
    ) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(shared_secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"callwarden review desk csrf v1");
        Self {
            review,
            blocklist,
            auth,
            postgres,
            preferences,
            catalogues,
            clock,
            csrf_key: mac.finalize().into_bytes().to_vec(),
            secure_cookies,
            templates: templates(),
        }
    }

    /// Renders a page with the reader's words and the session's frame.
    fn render(
        &self,
        template: &str,
        speaker: &Speaker,
        frame: Option<&Frame>,
        ctx: serde_json::Value,
    ) -> Response {
        let tmpl = self
            .templates
            .get_template(template)
            .expect("templates are compiled in");
        let words = words(speaker);
        let base = serde_json::json!({ "lang": speaker.lang.tag(), "frame": frame });
        let full = minijinja::value::merge_maps([
            minijinja::Value::from(minijinja::value::Serde(ctx)),
            words,
            minijinja::Value::from(minijinja::value::Serde(base)),
        ]);
        match tmpl.render(full) {
            Ok(html) => (security_headers(), Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "desk template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    speaker.t("error-internal"),
                )
                    .into_response()
            }
        }
    }

    /// A page that says what went wrong, in the reader's words, with the HTTP status that
    /// matches the gRPC one.
    fn failure(&self, speaker: &Speaker, frame: Option<&Frame>, error: &DeskError) -> Response {
        let (code, message) = match error {
            DeskError::Csrf => (StatusCode::FORBIDDEN, speaker.t("error-csrf")),
            DeskError::Status(status) => {
                use tonic::Code;
                let with = |id: &str| {
                    speaker.t_with(
                        id,
                        &[(
                            "message",
                            crate::i18n::Arg::Text(status.message().to_owned()),
                        )],
                    )
                };
                match status.code() {
                    Code::InvalidArgument | Code::OutOfRange => {
                        (StatusCode::BAD_REQUEST, with("error-invalid"))
                    }
                    Code::NotFound => (StatusCode::NOT_FOUND, speaker.t("error-not-found")),
                    Code::FailedPrecondition | Code::AlreadyExists => {
                        (StatusCode::CONFLICT, with("error-conflict"))
                    }
                    Code::PermissionDenied => (StatusCode::FORBIDDEN, speaker.t("error-forbidden")),
                    Code::ResourceExhausted => {
                        (StatusCode::TOO_MANY_REQUESTS, status.message().to_owned())
                    }
                    Code::Unavailable => {
                        (StatusCode::SERVICE_UNAVAILABLE, with("error-unavailable"))
                    }
                    Code::Unauthenticated => (StatusCode::UNAUTHORIZED, speaker.t("sign-in-ended")),
                    _ => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        speaker.t("error-internal"),
                    ),
                }
            }
        };
        let mut page = self.render(
            "error.html",
            speaker,
            frame,
            serde_json::json!({ "message": message, "code": code.as_u16() }),
        );
        *page.status_mut() = code;
        page
    }
}

/// What a `?done=` notice may name after a form (`what-<name>` in the catalogues); anything
/// else is ignored, never echoed.
pub(crate) const DONE_NOTICES: &[&str] = &[
    "acknowledged",
    "statement",
    "evidence",
    "resolved",
    "dismissed",
    "reopened",
    "rule-added",
    "rule-removed",
    "settings",
];

/// Why an action failed: the service's own answer, or a form that did not come from the desk.
#[derive(Debug)]
pub enum DeskError {
    Status(tonic::Status),
    Csrf,
}

impl From<tonic::Status> for DeskError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

impl From<crate::error::ApiError> for DeskError {
    fn from(e: crate::error::ApiError) -> Self {
        Self::Status(e.into())
    }
}

/// What every signed-in page shows around its content.
#[derive(Debug, Clone, Serialize)]
struct Frame {
    who: String,
    role: String,
    csrf: String,
    /// The navigation entry of this page.
    section: &'static str,
    zone: String,
}

/// The message functions templates call: `t(message_id, name=value)`, `name(group, code)`.
fn words(speaker: &Speaker) -> minijinja::Value {
    use minijinja::value::{Kwargs, Value};
    let (s1, s2) = (speaker.clone(), speaker.clone());
    minijinja::context! {
        t => Value::from_function(move |id: &str, kwargs: Kwargs| -> Result<String, minijinja::Error> {
            let mut args = Vec::new();
            for key in kwargs.args() {
                let v: Value = kwargs.get(key)?;
                let arg = match v.as_i64() {
                    Some(n) if v.is_number() => crate::i18n::Arg::Number(n as f64),
                    _ => crate::i18n::Arg::Text(v.to_string()),
                };
                args.push((key, arg));
            }
            Ok(s1.t_with(id, &args))
        }),
        name => Value::from_function(move |group: &str, code: &str| s2.name(group, code)),
    }
}

/// Headers every page carries: nothing from elsewhere may run or frame it.
fn security_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("sign_in.html", include_str!("../../templates/sign_in.html")),
        ("error.html", include_str!("../../templates/error.html")),
        ("queue.html", include_str!("../../templates/queue.html")),
        (
            "queue_table.html",
            include_str!("../../templates/queue_table.html"),
        ),
        (
            "incident.html",
            include_str!("../../templates/incident.html"),
        ),
        (
            "blocklist.html",
            include_str!("../../templates/blocklist.html"),
        ),
        (
            "dashboard.html",
            include_str!("../../templates/dashboard.html"),
        ),
        (
            "settings.html",
            include_str!("../../templates/settings.html"),
        ),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name} does not compile: {e}"));
    }
    env
}

/// The desk's routes, under `/desk`.
pub fn router(desk: Arc<Desk>) -> Router {
    Router::new()
        .route("/desk", get(|| async { Redirect::to("/desk/queue") }))
        .route(
            "/desk/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/desk/sign-out", post(session::sign_out))
        .route("/desk/queue", get(pages::queue))
        .route("/desk/queue/events", get(pages::queue_events))
        .route("/desk/incidents/{id}", get(pages::incident))
        .route("/desk/incidents/{id}/{act}", post(pages::incident_act))
        .route("/desk/incidents/{id}/export", get(pages::export))
        .route("/desk/blocklist", get(pages::blocklist))
        .route("/desk/blocklist/rules", post(pages::add_rule))
        .route(
            "/desk/blocklist/rules/{id}/remove",
            post(pages::remove_rule),
        )
        .route("/desk/dashboard", get(pages::dashboard))
        .route(
            "/desk/settings",
            get(pages::settings).post(pages::save_settings),
        )
        .route("/desk/static/desk.css", get(static_css))
        .route("/desk/static/desk.js", get(static_js))
        .with_state(desk)
}

async fn static_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/desk.css"),
    )
}

async fn static_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/desk.js"),
    )
}

/// The caller of a service call made for `principal`: what the gRPC auth layer would have put
/// in the request.
fn as_principal<T>(principal: &Principal, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(principal.clone());
    request
}
