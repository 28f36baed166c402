//! Signing in and out of the desk, the session every page reads (who, in which language and
//! time zone), CSRF tokens, and the authorization of each service call the desk makes.

use super::{Desk, DeskError, Frame};
use crate::{
    auth::{self, Denial, Principal, Role},
    i18n::{self, Arg, Lang, Speaker},
};
use axum::{
    extract::{FromRequestParts, Query, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use callwarden_storage::preferences::Preferences;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;

/// The session cookie: the bearer token itself, so the desk trusts exactly what the API does.
const SESSION_COOKIE: &str = "callwarden_desk";
/// A random value bound to the sign-in form before there is a session (login CSRF).
const PRESESSION_COOKIE: &str = "callwarden_desk_pre";
/// The time zone the browser reported at sign-in; a saved setting overrides it.
const ZONE_COOKIE: &str = "callwarden_desk_tz";
/// Any page's role check: who may read the queue may use the desk.
const DESK_RPC: &str = "/callwarden.v1.Review/ListIncidents";

/// A signed-in supervisor or admin, in their language and time zone.
pub struct Session {
    pub principal: Principal,
    token: String,
    pub speaker: Speaker,
    /// The browser's own time zone, for the settings page.
    pub browser_zone: Option<String>,
    pub preferences: Preferences,
}

impl Session {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self, desk: &Desk) -> String {
        csrf_token(desk, "session", &self.token)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, desk: &Desk, presented: &str) -> Result<(), DeskError> {
        check_csrf(desk, "session", &self.token, presented)
    }

    /// A request to the service RPC at `path` as this user, authorized and rate-limited by the
    /// API's own table, and refused at once while Postgres is away (the desk only calls
    /// services that need the record).
    pub fn request<T>(
        &self,
        desk: &Desk,
        path: &str,
        message: T,
    ) -> Result<tonic::Request<T>, DeskError> {
        desk.auth.check(path, &bearer(&self.token), None)?;
        if !desk.postgres.is_up() {
            return Err(crate::health::postgres_unavailable("the review desk").into());
        }
        Ok(super::as_principal(&self.principal, message))
    }

    pub(super) fn frame(&self, desk: &Desk, section: &'static str) -> Frame {
        Frame {
            who: self.principal.subject.clone(),
            role: self.speaker.name("role", self.principal.role.as_str()),
            csrf: self.csrf(desk),
            section,
            zone: self.speaker.zone.name().to_owned(),
        }
    }
}

impl FromRequestParts<Arc<Desk>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, desk: &Arc<Desk>) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/desk/sign-in").into_response());
        };
        let principal = match signed_in(desk, &token) {
            Ok(p) => p,
            Err(SignInRefusal::Credentials(_)) => {
                return Err(Redirect::to("/desk/sign-in?ended=1").into_response());
            }
            Err(SignInRefusal::Role(role)) => {
                let speaker = anonymous_speaker(desk, &parts.headers);
                return Err(refused_role(desk, &speaker, role));
            }
        };
        let preferences = if desk.postgres.is_up() {
            desk.preferences
                .get(&principal.subject)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "desk preferences unavailable; using the browser's");
                    Preferences::default()
                })
        } else {
            Preferences::default()
        };
        let browser_zone =
            cookie(&parts.headers, ZONE_COOKIE).filter(|z| i18n::time_zone(z).is_ok());
        let lang = preferences
            .locale
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| accept_language(&parts.headers));
        let zone = preferences
            .time_zone
            .as_deref()
            .or(browser_zone.as_deref())
            .and_then(|z| i18n::time_zone(z).ok())
            .unwrap_or(chrono_tz::UTC);
        Ok(Session {
            principal,
            token,
            speaker: Speaker::new(desk.catalogues.clone(), lang, zone),
            browser_zone,
            preferences,
        })
    }
}

enum SignInRefusal {
    Credentials(Denial),
    Role(Role),
}

/// Who a token names, if they may use the desk.
fn signed_in(desk: &Desk, token: &str) -> Result<Principal, SignInRefusal> {
    let principal = desk
        .auth
        .authenticate(&bearer(token), None)
        .map_err(SignInRefusal::Credentials)?;
    let roles = auth::allowed(DESK_RPC).expect("the review RPCs are in the role table");
    if roles.contains(&principal.role) {
        Ok(principal)
    } else {
        metrics::counter!(
            "callwarden_auth_denied_total",
            "reason" => Denial::Forbidden.as_str(),
            "role" => principal.role.as_str()
        )
        .increment(1);
        Err(SignInRefusal::Role(principal.role))
    }
}

fn refused_role(desk: &Desk, speaker: &Speaker, role: Role) -> Response {
    let message = speaker.t_with(
        "sign-in-refused-role",
        &[("role", Arg::Text(speaker.name("role", role.as_str())))],
    );
    let mut page = desk.render(
        "error.html",
        speaker,
        None,
        serde_json::json!({ "message": message, "code": 403, "sign_in": true }),
    );
    *page.status_mut() = StatusCode::FORBIDDEN;
    page
}

#[derive(Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    ended: Option<String>,
    #[serde(default)]
    out: Option<String>,
}

pub async fn sign_in_page(
    State(desk): State<Arc<Desk>>,
    Query(q): Query<SignInQuery>,
    headers: HeaderMap,
) -> Response {
    let speaker = anonymous_speaker(&desk, &headers);
    let notice = if q.ended.is_some() {
        Some(speaker.t("sign-in-ended"))
    } else if q.out.is_some() {
        Some(speaker.t("signed-out"))
    } else {
        None
    };
    sign_in_form(&desk, &speaker, &headers, notice, None, StatusCode::OK)
}

/// The sign-in form, with a fresh pre-session value unless the browser has one.
fn sign_in_form(
    desk: &Desk,
    speaker: &Speaker,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
    code: StatusCode,
) -> Response {
    let existing = cookie(headers, PRESESSION_COOKIE);
    let nonce = existing
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let mut page = desk.render(
        "sign_in.html",
        speaker,
        None,
        serde_json::json!({
            "csrf": csrf_token(desk, "pre", &nonce),
            "notice": notice,
            "error": error,
        }),
    );
    *page.status_mut() = code;
    if existing.is_none() {
        set_cookie(&mut page, desk, PRESESSION_COOKIE, &nonce, None);
    }
    page
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    /// The browser's IANA time zone, filled in by the page's script.
    #[serde(default)]
    tz: String,
}

pub async fn sign_in(
    State(desk): State<Arc<Desk>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let speaker = anonymous_speaker(&desk, &headers);
    let form: SignInForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return desk.failure(&speaker, None, &DeskError::Csrf),
    };
    let nonce = cookie(&headers, PRESESSION_COOKIE).unwrap_or_default();
    if nonce.is_empty() || check_csrf(&desk, "pre", &nonce, &form.csrf).is_err() {
        return desk.failure(&speaker, None, &DeskError::Csrf);
    }
    let token = form.token.trim();
    match signed_in(&desk, token) {
        Ok(principal) => {
            tracing::info!(subject = %principal.subject, role = principal.role.as_str(), "signed in to the desk");
            let mut response = Redirect::to("/desk/queue").into_response();
            set_cookie(&mut response, &desk, SESSION_COOKIE, token, None);
            if i18n::time_zone(&form.tz).is_ok() {
                set_cookie(&mut response, &desk, ZONE_COOKIE, &form.tz, None);
            }
            // The pre-session value has served its purpose.
            set_cookie(&mut response, &desk, PRESESSION_COOKIE, "", Some(0));
            response
        }
        Err(SignInRefusal::Role(role)) => refused_role(&desk, &speaker, role),
        Err(SignInRefusal::Credentials(denial)) => {
            let error = speaker.t_with(
                "sign-in-invalid",
                &[("reason", Arg::Text(speaker.name("denial", denial.as_str())))],
            );
            sign_in_form(
                &desk,
                &speaker,
                &headers,
                None,
                Some(error),
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(desk): State<Arc<Desk>>,
    session: Session,
    body: axum::body::Bytes,
) -> Response {
    let form: CsrfOnly = serde_urlencoded::from_bytes(&body).unwrap_or(CsrfOnly {
        csrf: String::new(),
    });
    if let Err(e) = session.check_csrf(&desk, &form.csrf) {
        return desk.failure(&session.speaker, None, &e);
    }
    let mut response = Redirect::to("/desk/sign-in?out=1").into_response();
    set_cookie(&mut response, &desk, SESSION_COOKIE, "", Some(0));
    response
}

/// The reader before sign-in: the browser's language, UTC.
fn anonymous_speaker(desk: &Desk, headers: &HeaderMap) -> Speaker {
    Speaker::new(
        desk.catalogues.clone(),
        accept_language(headers),
        chrono_tz::UTC,
    )
}

fn accept_language(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::negotiate)
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = format!("Bearer {token}").parse() {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Sets a desk cookie: HttpOnly (scripts never read it), SameSite=Strict (other sites never
/// send it), only under /desk, and Secure when served over TLS. `max_age` 0 removes it; none
/// lasts for the browser session.
fn set_cookie(response: &mut Response, desk: &Desk, name: &str, value: &str, max_age: Option<u32>) {
    let mut cookie = format!("{name}={value}; Path=/desk; HttpOnly; SameSite=Strict");
    if desk.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if let Ok(v) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn csrf_mac(desk: &Desk, purpose: &str, bound_to: &str) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&desk.csrf_key).expect("any key length");
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(bound_to.as_bytes());
    mac
}

fn csrf_token(desk: &Desk, purpose: &str, bound_to: &str) -> String {
    hex::encode(csrf_mac(desk, purpose, bound_to).finalize().into_bytes())
}

fn check_csrf(
    desk: &Desk,
    purpose: &str,
    bound_to: &str,
    presented: &str,
) -> Result<(), DeskError> {
    let presented = hex::decode(presented).map_err(|_| DeskError::Csrf)?;
    csrf_mac(desk, purpose, bound_to)
        .verify_slice(&presented)
        .map_err(|_| {
            metrics::counter!("callwarden_desk_csrf_refused_total").increment(1);
            tracing::warn!("desk form refused: CSRF token missing or wrong");
            DeskError::Csrf
        })
}
