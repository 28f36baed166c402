//! Who is calling, and may they: bearer JWTs for people (operators, supervisors, admins) and
//! API keys for switches are checked once per request by [`AuthLayer`], against one table of
//! which role may call which RPC ([`allowed`]). The services then read the [`Principal`] from
//! the request to bind pseudonyms in requests to the caller's own.

use crate::memo::Memo;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
};
use tonic::{
    Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Switch,
    Operator,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Switch => "switch",
            Self::Operator => "operator",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "switch" => Ok(Self::Switch),
            "operator" => Ok(Self::Operator),
            "supervisor" => Ok(Self::Supervisor),
            "admin" => Ok(Self::Admin),
            _ => Err(format!(
                "{s:?} is not a role (switch, operator, supervisor, admin)"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller, put in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// A pseudonym for people, the switch id for switches.
    pub subject: String,
}

/// The claims Callwarden reads from (and mints into) a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
}

/// Why a request was refused; the reason is a metric label and a log field, never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Missing,
    Malformed,
    Expired,
    BadSignature,
    WrongAudience,
    UnknownKey,
    Forbidden,
}

impl Denial {
    pub const ALL: [Denial; 7] = [
        Self::Missing,
        Self::Malformed,
        Self::Expired,
        Self::BadSignature,
        Self::WrongAudience,
        Self::UnknownKey,
        Self::Forbidden,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::Malformed => "malformed_credentials",
            Self::Expired => "expired_token",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey => "unknown_api_key",
            Self::Forbidden => "role_not_allowed",
        }
    }

    fn status(&self, path: &str, principal: Option<&Principal>) -> Status {
        match (self, principal) {
            (Self::Forbidden, Some(p)) => {
                Status::permission_denied(format!("role {} may not call {path}", p.role))
            }
            (Self::Missing, _) => Status::unauthenticated(
                "credentials required: `authorization: Bearer <token>` or, for switches, `x-api-key`",
            ),
            (Self::Expired, _) => Status::unauthenticated("token expired"),
            (Self::WrongAudience, _) => Status::unauthenticated("token is for another audience"),
            (Self::UnknownKey, _) => Status::unauthenticated("unknown API key"),
            _ => Status::unauthenticated("invalid credentials"),
        }
    }
}

/// Which roles may call an RPC (by gRPC path). Health and reflection are open; anything not
/// listed is refused.
pub fn allowed(path: &str) -> Option<&'static [Role]> {
    use Role::*;
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    Some(match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => &[],
        ("callwarden.v1.Screening", _) => &[Switch, Admin],
        ("callwarden.v1.Console", _) => &[Operator, Admin],
        ("callwarden.v1.Review", "UnsealReporter" | "ListIncidentReads") => &[Admin],
        ("callwarden.v1.Review", _) | ("callwarden.v1.BlockList", _) => &[Supervisor, Admin],
        _ => return None,
    })
}

/// Checks credentials. Built once from the configuration.
pub struct Authenticator {
    keys: Vec<(DecodingKey, Validation)>,
    /// SHA-256 (hex) of each switch API key → the switch id it stands for.
    switch_keys: HashMap<String, String>,
    /// Requests per second each principal of a role may make (burst: twice that); absent
    /// means unlimited.
    rates: HashMap<Role, u32>,
    /// Each principal's bucket: (tokens left, when last refilled). Per replica.
    buckets: std::sync::Mutex<HashMap<(Role, String), (f64, std::time::Instant)>>,
    /// Tokens whose signature, audience and issuer were verified → who they name and their
    /// `exp`: a console sends the same token with every request, and verifying it again cost
    /// as much as a tenth of a check. Expiry is still checked on every use.
    verified: Memo<String, (Principal, i64)>,
    /// Client certificates (DER) → the switch each names: a switch presents the same one with
    /// every check, and reading the X.509 structure again each time is wasted.
    certificates: Memo<Vec<u8>, Option<String>>,
    /// Tolerance on `exp`, in seconds.
    leeway: i64,
}

/// Verified tokens, and certificates, remembered at most.
const CREDENTIALS_REMEMBERED: usize = 16_384;

impl Authenticator {
    pub fn new(
        hs256_secret: Option<&str>,
        public_keys: Vec<(Algorithm, DecodingKey)>,
        audience: &str,
        issuer: Option<&str>,
        leeway_seconds: u64,
        switch_keys: HashMap<String, String>,
    ) -> Self {
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.set_audience(&[audience]);
            v.leeway = leeway_seconds;
            v.set_required_spec_claims(&["exp", "aud", "sub"]);
            if let Some(iss) = issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        let mut keys = Vec::new();
        if let Some(secret) = hs256_secret {
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        for (alg, key) in public_keys {
            keys.push((key, validation(alg)));
        }
        Self {
            keys,
            switch_keys,
            rates: HashMap::new(),
            buckets: Default::default(),
            verified: Memo::new(CREDENTIALS_REMEMBERED),
            certificates: Memo::new(CREDENTIALS_REMEMBERED),
            leeway: leeway_seconds.min(i64::MAX as u64) as i64,
        }
    }

    /// Limits each principal of `role` to `per_second` requests (bursts of twice that).
    pub fn with_rate(mut self, role: Role, per_second: u32) -> Self {
        if per_second > 0 {
            self.rates.insert(role, per_second);
        }
        self
    }

    /// Takes one request from the principal's budget; false when it is spent.
    fn admit(&self, p: &Principal) -> bool {
        let Some(&rate) = self.rates.get(&p.role) else {
            return true;
        };
        let rate = f64::from(rate);
        let burst = 2.0 * rate;
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().expect("rate buckets");
        if buckets.len() > 100_000 {
            // Idle principals' buckets are full anyway: forget them rather than grow.
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets
            .entry((p.role, p.subject.clone()))
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Who presents these credentials: an API key (a switch), a bearer token (a person), or
    /// else a client certificate the TLS handshake verified against the switches' CA (a
    /// switch, named by the certificate).
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client_certificate: Option<&[u8]>,
    ) -> Result<Principal, Denial> {
        self.authenticate_at(headers, client_certificate, chrono::Utc::now().timestamp())
    }

    /// [`Authenticator::authenticate`] at `now` (Unix seconds) for remembered tokens; a token
    /// seen for the first time is checked against the real clock.
    fn authenticate_at(
        &self,
        headers: &http::HeaderMap,
        client_certificate: Option<&[u8]>,
        now: i64,
    ) -> Result<Principal, Denial> {
        if let Some(key) = headers.get("x-api-key") {
            let key = key.to_str().map_err(|_| Denial::Malformed)?;
            let digest = hex::encode(Sha256::digest(key.as_bytes()));
            return self
                .switch_keys
                .get(&digest)
                .map(|switch| Principal {
                    role: Role::Switch,
                    subject: switch.clone(),
                })
                .ok_or(Denial::UnknownKey);
        }
        let Some(header) = headers.get(http::header::AUTHORIZATION) else {
            return match client_certificate {
                Some(der) => self
                    .certificates
                    .get_or_try_insert(der, || Ok::<_, Denial>(crate::tls::switch_id(der)))?
                    .map(|switch| Principal {
                        role: Role::Switch,
                        subject: switch,
                    })
                    .ok_or(Denial::Malformed),
                None => Err(Denial::Missing),
            };
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(Denial::Malformed)?;
        if let Some((principal, exp)) = self.verified.get(token) {
            return if now <= exp.saturating_add(self.leeway) {
                Ok(principal)
            } else {
                Err(Denial::Expired)
            };
        }
        let alg = jsonwebtoken::decode_header(token)
            .map_err(|_| Denial::Malformed)?
            .alg;
        let mut last = Denial::BadSignature;
        for (key, validation) in self
            .keys
            .iter()
            .filter(|(_, v)| v.algorithms.contains(&alg))
        {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => {
                    let c = data.claims;
                    if c.role == Role::Switch || c.sub.is_empty() {
                        // Switches use API keys (or certificates); a token names a person.
                        return Err(Denial::Malformed);
                    }
                    let principal = Principal {
                        role: c.role,
                        subject: c.sub,
                    };
                    self.verified
                        .insert(token.to_owned(), (principal.clone(), c.exp));
                    return Ok(principal);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::ExpiredSignature | K::ImmatureSignature => Denial::Expired,
                        K::InvalidAudience | K::InvalidIssuer => Denial::WrongAudience,
                        K::InvalidSignature => Denial::BadSignature,
                        _ => Denial::Malformed,
                    };
                }
            }
        }
        Err(last)
    }

    /// Authenticates (unless the RPC is open) and authorizes one request.
    pub fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        client_certificate: Option<&[u8]>,
    ) -> Result<Option<Principal>, Status> {
        let refuse = |denial: Denial, principal: Option<&Principal>| {
            metrics::counter!(
                "callwarden_auth_denied_total",
                "reason" => denial.as_str(),
                "role" => principal.map_or("none", |p| p.role.as_str())
            )
            .increment(1);
            tracing::warn!(
                path,
                reason = denial.as_str(),
                role = principal.map(|p| p.role.as_str()),
                subject = principal.map(|p| p.subject.as_str()),
                "request refused"
            );
            denial.status(path, principal)
        };
        let Some(roles) = allowed(path) else {
            return Err(refuse(Denial::Forbidden, None));
        };
        if roles.is_empty() {
            return Ok(None);
        }
        let principal = self
            .authenticate(headers, client_certificate)
            .map_err(|d| refuse(d, None))?;
        if !roles.contains(&principal.role) {
            return Err(refuse(Denial::Forbidden, Some(&principal)));
        }
        if !self.admit(&principal) {
            metrics::counter!("callwarden_rate_limited_total", "role" => principal.role.as_str())
                .increment(1);
            return Err(Status::resource_exhausted(format!(
                "rate limit of {} requests per second for role {} reached; slow down",
                self.rates[&principal.role], principal.role
            )));
        }
        Ok(Some(principal))
    }
}

/// Every public key in a PEM file: RSA keys verify RS256 tokens, EC (P-256) keys ES256. None
/// if a block is neither, or there is none.
pub fn public_keys(pem: &str) -> Option<Vec<(Algorithm, DecodingKey)>> {
    let mut keys = Vec::new();
    let mut block = String::new();
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") {
            block.clear();
        }
        block.push_str(line);
        block.push('\n');
        if line.starts_with("-----END") {
            let key = DecodingKey::from_rsa_pem(block.as_bytes())
                .map(|k| (Algorithm::RS256, k))
                .or_else(|_| {
                    DecodingKey::from_ec_pem(block.as_bytes()).map(|k| (Algorithm::ES256, k))
                })
                .ok()?;
            keys.push(key);
        }
    }
    (!keys.is_empty()).then_some(keys)
}

/// The caller of a request, as [`AuthLayer`] found it (None on open RPCs).
pub fn principal<T>(request: &tonic::Request<T>) -> Option<Principal> {
    request.extensions().get::<Principal>().cloned()
}

/// Who a request acts as, where it names someone (`operator_id`, `supervisor_id`, `switch_id`,
/// `created_by`, ...) whose role is `role`: for a caller of that role, their own pseudonym or
/// switch id (empty means "me"; naming someone else is PERMISSION_DENIED). An admin may name
/// anyone; where the field is a supervisor's, an admin who names nobody acts as themselves.
pub fn acting_as(
    principal: Option<&Principal>,
    role: Role,
    field: &str,
    named: &str,
) -> Result<String, crate::error::ApiError> {
    let Some(p) = principal else {
        return Err(crate::error::ApiError::PermissionDenied(format!(
            "{field}: no credentials"
        )));
    };
    if p.role == Role::Admin {
        if named.is_empty() && role == Role::Supervisor {
            return Ok(p.subject.clone());
        }
        return Ok(named.to_owned());
    }
    if p.role == role && (named.is_empty() || named == p.subject) {
        return Ok(p.subject.clone());
    }
    metrics::counter!(
        "callwarden_auth_denied_total",
        "reason" => "acting_for_another",
        "role" => p.role.as_str()
    )
    .increment(1);
    tracing::warn!(
        field,
        role = p.role.as_str(),
        subject = %p.subject,
        "request names someone other than its caller"
    );
    Err(crate::error::ApiError::PermissionDenied(format!(
        "{field}: {named:?} is not who your credentials say you are ({:?})",
        p.subject
    )))
}

/// The request with the field that names its actor bound to the caller (see [`acting_as`]).
pub fn bound<T>(
    request: tonic::Request<T>,
    role: Role,
    field: &str,
    actor: fn(&mut T) -> &mut String,
) -> Result<T, crate::error::ApiError> {
    let who = principal(&request);
    let mut req = request.into_inner();
    let named = std::mem::take(actor(&mut req));
    *actor(&mut req) = acting_as(who.as_ref(), role, field, &named)?;
    Ok(req)
}

/// Caps the server streams (WatchCommands, WatchIncidents) one principal holds open on this
/// replica, so one caller cannot exhaust connections or memory.
#[derive(Clone, Default)]
pub struct StreamSlots {
    max: usize,
    open: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    slots: StreamSlots,
    key: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("stream slots");
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Default::default(),
        }
    }

    /// A slot for the caller's new stream, or RESOURCE_EXHAUSTED when they hold the maximum.
    pub fn take(&self, principal: Option<&Principal>) -> Result<Option<StreamSlot>, Status> {
        let Some(p) = principal.filter(|p| p.role != Role::Admin) else {
            return Ok(None);
        };
        let key = format!("{}:{}", p.role, p.subject);
        let mut open = self.open.lock().expect("stream slots");
        let n = open.entry(key.clone()).or_default();
        if *n >= self.max {
            metrics::counter!("callwarden_rate_limited_total", "role" => p.role.as_str())
                .increment(1);
            return Err(Status::resource_exhausted(format!(
                "{} streams open already (the most one caller may hold); close one first",
                self.max
            )));
        }
        *n += 1;
        Ok(Some(StreamSlot {
            slots: self.clone(),
            key,
        }))
    }
}

/// Mints a token signed with the HS256 secret (`callwarden token`, tests).
pub fn mint(
    secret: &str,
    role: Role,
    subject: &str,
    audience: &str,
    now: i64,
    ttl_seconds: i64,
) -> String {
    let claims = Claims {
        sub: subject.to_owned(),
        role,
        aud: audience.to_owned(),
        exp: now + ttl_seconds,
        iat: now,
        iss: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// The tower layer that runs [`Authenticator::check`] before any service sees a request.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, std::future::Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The switch's certificate, if it presented one the handshake verified (mutual TLS).
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let client_certificate = certificates.as_deref().and_then(|c| c.first());
        match self.auth.check(
            request.uri().path(),
            request.headers(),
            client_certificate.map(|c| c.as_ref()),
        ) {
            Ok(principal) => {
                if let Some(p) = principal {
                    request.extensions_mut().insert(p);
                }
                futures::future::Either::Left(self.inner.call(request))
            }
            Err(status) => {
                futures::future::Either::Right(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let mut keys = HashMap::new();
        keys.insert(
            hex::encode(Sha256::digest(b"switch-key-1")),
            "sw-1".to_owned(),
        );
        Authenticator::new(Some("s3cret"), Vec::new(), "callwarden", None, 30, keys)
    }

    impl Authenticator {
        fn authenticate_headers(&self, h: &http::HeaderMap) -> Result<Principal, Denial> {
            self.authenticate(h, None)
        }
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_audience() {
        let a = auth();
        let now = chrono::Utc::now().timestamp();
        let ok = mint("s3cret", Role::Operator, "op-1", "callwarden", now, 60);
        assert_eq!(
            a.authenticate_headers(&bearer(&ok)),
            Ok(Principal {
                role: Role::Operator,
                subject: "op-1".into()
            })
        );
        let expired = mint(
            "s3cret",
            Role::Operator,
            "op-1",
            "callwarden",
            now - 3600,
            60,
        );
        assert_eq!(
            a.authenticate_headers(&bearer(&expired)),
            Err(Denial::Expired)
        );
        // Within the allowed skew an expired token still passes.
        let just = mint("s3cret", Role::Operator, "op-1", "callwarden", now - 70, 60);
        assert!(a.authenticate_headers(&bearer(&just)).is_ok());
        let other = mint("other", Role::Admin, "x", "callwarden", now, 60);
        assert_eq!(
            a.authenticate_headers(&bearer(&other)),
            Err(Denial::BadSignature)
        );
        let aud = mint("s3cret", Role::Admin, "x", "elsewhere", now, 60);
        assert_eq!(
            a.authenticate_headers(&bearer(&aud)),
            Err(Denial::WrongAudience)
        );
        let mut tampered = ok.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(a.authenticate_headers(&bearer(&tampered)).is_err());
        assert_eq!(
            a.authenticate_headers(&http::HeaderMap::new()),
            Err(Denial::Missing)
        );
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let a = auth();
        let now = chrono::Utc::now().timestamp();
        let t = mint("s3cret", Role::Operator, "op-1", "callwarden", now, 60);
        let h = bearer(&t);
        assert!(a.authenticate_at(&h, None, now).is_ok());
        assert!(a.verified.get(t.as_str()).is_some(), "remembered");
        // Within exp plus the 30 s skew, then not.
        assert!(a.authenticate_at(&h, None, now + 60 + 30).is_ok());
        assert_eq!(
            a.authenticate_at(&h, None, now + 60 + 31),
            Err(Denial::Expired)
        );
        // A tampered copy is not the remembered token.
        let mut tampered = t.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(a.authenticate_at(&bearer(&tampered), None, now).is_err());
    }

    #[test]
    fn switches_use_api_keys() {
        let a = auth();
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", "switch-key-1".parse().unwrap());
        assert_eq!(
            a.authenticate_headers(&h),
            Ok(Principal {
                role: Role::Switch,
                subject: "sw-1".into()
            })
        );
        h.insert("x-api-key", "guess".parse().unwrap());
        assert_eq!(a.authenticate_headers(&h), Err(Denial::UnknownKey));
        let now = chrono::Utc::now().timestamp();
        let t = mint("s3cret", Role::Switch, "sw-1", "callwarden", now, 60);
        assert_eq!(a.authenticate_headers(&bearer(&t)), Err(Denial::Malformed));
    }

    #[test]
    fn one_table_says_who_may_call_what() {
        use Role::*;
        let may = |path: &str, role| allowed(path).is_some_and(|r| r.contains(&role));
        assert!(may("/callwarden.v1.Screening/CheckCall", Switch));
        assert!(!may("/callwarden.v1.Screening/CheckCall", Operator));
        assert!(may("/callwarden.v1.Console/EndAndFlag", Operator));
        assert!(!may("/callwarden.v1.Console/EndAndFlag", Supervisor));
        assert!(may("/callwarden.v1.Review/ListIncidents", Supervisor));
        assert!(!may("/callwarden.v1.Review/UnsealReporter", Supervisor));
        assert!(may("/callwarden.v1.Review/UnsealReporter", Admin));
        assert!(may("/callwarden.v1.BlockList/AddRule", Supervisor));
        assert!(!may("/callwarden.v1.BlockList/AddRule", Operator));
        assert_eq!(allowed("/grpc.health.v1.Health/Check"), Some(&[][..]));
        assert_eq!(allowed("/callwarden.v1.Nope/X"), None);
    }
}
