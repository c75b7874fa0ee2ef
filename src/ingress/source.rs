//! `kind: Source` — an ingress endpoint: accepted formats, authentication, and where the event
//! type, id, subject and extensions come from.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::preset;
use crate::config::parse_duration;
use crate::doc::{DocCtx, DocError, parse_spec};
use crate::render::Tpl;
use crate::secret::{Secret, SecretBytes, SecretRef};
use crate::signature;

/// A value that may be written as one item or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceSpec {
    #[serde(default)]
    formats: Vec<String>,
    auth: AuthSpec,
    #[serde(default)]
    event: EventSpec,
    dedup: Option<DedupSpec>,
    max_body_bytes: Option<usize>,
}

/// The literal `none`.
#[derive(Debug, Deserialize)]
enum Open {
    #[serde(rename = "none")]
    None,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AuthSpec {
    None(Open),
    Token {
        token: TokenSpec,
    },
    Hmac {
        hmac: HmacSpec,
    },
    StandardWebhooks {
        #[serde(rename = "standardWebhooks")]
        standard_webhooks: StandardWebhooksSpec,
    },
    Oidc {
        oidc: OidcSpec,
    },
}

/// Knative's OIDC sender identity: who may send (issuer, audience, subjects) and the keys.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OidcSpec {
    issuer: String,
    audience: String,
    /// The issuer's JWK Set: `{file: …}` (a ConfigMap of `kubectl get --raw /openid/v1/jwks`),
    /// `{env: …}` or the document itself. Or:
    jwks: Option<SecretRef>,
    /// The issuer's discovery document (`…/.well-known/openid-configuration`): the keys are
    /// fetched from its `jwks_uri`, and again when a token names a key not yet seen.
    discovery: Option<String>,
    /// With `discovery`: the issuer's CA (PEM), when its certificate is not from a public one
    /// (the in-cluster API server: `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`).
    ca_file: Option<String>,
    /// With `discovery`: a file holding a bearer token for the issuer (the pod's
    /// service-account token), read at each fetch.
    token_file: Option<String>,
    #[serde(default)]
    subjects: Vec<String>,
    leeway: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenSpec {
    header: Option<String>,
    secret: SecretRef,
}

#[derive(Debug, Deserialize)]
struct HmacSpec {
    header: Option<String>,
    secret: SecretRef,
    #[serde(default)]
    style: HmacStyle,
}

#[derive(Debug, Deserialize)]
struct StandardWebhooksSpec {
    secret: SecretRef,
    tolerance: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct EventSpec {
    #[serde(rename = "type")]
    ty: Option<OneOrMany<ExtractorSpec>>,
    id: Option<OneOrMany<ExtractorSpec>>,
    subject: Option<OneOrMany<ExtractorSpec>>,
    #[serde(default)]
    extensions: BTreeMap<String, OneOrMany<ExtractorSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExtractorSpec {
    header: Option<String>,
    pointer: Option<String>,
    value: Option<String>,
    template: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    lowercase: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DedupSpec {
    window: Option<String>,
    content_window: Option<String>,
}

/// How an HMAC signature header is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacStyle {
    /// Either of the two below.
    #[default]
    Auto,
    /// GitHub: `sha256=<hex>`.
    Github,
    /// Gitea / Gogs: bare hex.
    Hex,
}

/// How a Source authenticates requests.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Explicitly open.
    None,
    /// A shared token in a header, compared in constant time.
    Token { header: String, secret: Secret },
    /// HMAC-SHA256 of the raw body.
    Hmac {
        header: String,
        secret: Secret,
        style: HmacStyle,
    },
    /// Standard Webhooks `webhook-id/timestamp/signature`.
    StandardWebhooks {
        key: SecretBytes,
        tolerance: Duration,
    },
    /// A JWT bearer token signed by a key of the issuer (Knative OIDC).
    Oidc(std::sync::Arc<super::oidc::Verifier>),
}

/// Where one value comes from.
#[derive(Debug, Clone)]
pub enum Extract {
    Header(String),
    Pointer(String),
    Value(String),
    /// Rendered against `{headers, body}`; a missing field means "not here, try the next".
    Template(Tpl),
}

/// One way to find a value, with its post-processing.
#[derive(Debug, Clone)]
pub struct Extractor {
    pub from: Extract,
    pub prefix: String,
    pub lowercase: bool,
}

/// Where an event's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The sender named it (CloudEvents `source` + `id`, a delivery-id header, an id field):
    /// a repeat is the same event, kept out for the whole dedup window.
    Explicit,
    /// Made from the content (a hash, a template over the body): it only absorbs a sender's
    /// retries, kept out for the short content window, so a later identical notification is
    /// still sent.
    Content,
}

impl Extractor {
    /// What an id taken this way is: a header or a field is the sender's own id for the event;
    /// a literal or a template over the body is made from the content.
    pub fn id_kind(&self) -> IdKind {
        match self.from {
            Extract::Header(_) | Extract::Pointer(_) => IdKind::Explicit,
            Extract::Value(_) | Extract::Template(_) => IdKind::Content,
        }
    }
}

/// Where an event's attributes come from; each list is tried in order.
#[derive(Debug, Clone, Default)]
pub struct EventRules {
    pub ty: Vec<Extractor>,
    pub id: Vec<Extractor>,
    pub subject: Vec<Extractor>,
    pub extensions: Vec<(String, Vec<Extractor>)>,
}

/// A compiled Source.
#[derive(Debug, Clone)]
pub struct SourceDef {
    pub name: String,
    pub json: bool,
    pub cloudevents: bool,
    pub auth: Auth,
    pub event: EventRules,
    /// How long an explicit event id is remembered (else the relay's `dedup_window`).
    pub dedup_window: Option<Duration>,
    /// How long a content-made id is remembered (else the relay's `content_dedup_window`).
    pub content_dedup_window: Option<Duration>,
    pub max_body_bytes: Option<usize>,
    /// Whether its events name their own recipients (CNB's user notifications carry `touser`),
    /// so a Route from it needs none of its own.
    pub carries_recipients: bool,
}

impl SourceDef {
    /// What every event type it can produce starts with; `None` when it may produce any
    /// (CloudEvents carry their own type; a type read from the body without a prefix).
    pub fn type_prefixes(&self) -> Option<Vec<String>> {
        if self.cloudevents || self.event.ty.is_empty() {
            return None;
        }
        self.event
            .ty
            .iter()
            .map(|x| match &x.from {
                Extract::Value(v) => Some(format!("{}{v}", x.prefix)),
                _ if x.prefix.is_empty() => None,
                _ => Some(x.prefix.clone()),
            })
            .collect()
    }
}

/// The verifier of an `oidc` auth block. The key set is public: read, not registered as a
/// credential.
fn compile_oidc(o: OidcSpec, ctx: &DocCtx<'_>) -> Result<super::oidc::Verifier, DocError> {
    let leeway = match o.leeway.as_deref().map(|l| parse_duration("leeway", l)) {
        None => Duration::from_secs(30),
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(DocError::new("/spec/auth/oidc/leeway", e.to_string())),
    };
    for (field, value) in [("issuer", &o.issuer), ("audience", &o.audience)] {
        if value.trim().is_empty() {
            return Err(DocError::new(
                format!("/spec/auth/oidc/{field}"),
                "must not be empty",
            ));
        }
    }
    let rules = super::oidc::Rules {
        issuer: o.issuer,
        audience: o.audience,
        subjects: o.subjects,
        leeway_secs: leeway.as_secs(),
    };
    match (o.jwks, o.discovery) {
        (Some(jwks), None) => {
            let jwks = jwks
                .resolve(ctx.base_dir, ctx.secret_roots)
                .map_err(|m| DocError::new("/spec/auth/oidc/jwks", m))?;
            super::oidc::Verifier::new(jwks.secret.expose(), rules)
                .map_err(|m| DocError::new("/spec/auth/oidc/jwks", m))
        }
        (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
            let reach = issuer_reach(o.ca_file, o.token_file, ctx)?;
            Ok(super::oidc::Verifier::discovered(url, reach, rules))
        }
        (None, Some(_)) => Err(DocError::new(
            "/spec/auth/oidc/discovery",
            "must be an http(s) URL of the issuer's openid-configuration",
        )),
        _ => Err(DocError::new(
            "/spec/auth/oidc",
            "give the issuer's keys as exactly one of jwks or discovery",
        )),
    }
}

/// How an OIDC issuer's discovery is fetched: the shared client, or one that trusts the
/// issuer's own CA; and the token file, which must be readable (and is read again each time).
fn issuer_reach(
    ca_file: Option<String>,
    token_file: Option<String>,
    ctx: &DocCtx<'_>,
) -> Result<super::oidc::Reach, DocError> {
    let http = match ca_file {
        None => ctx.http.clone(),
        Some(path) => {
            let at = "/spec/auth/oidc/caFile";
            let pem =
                std::fs::read(&path).map_err(|e| DocError::new(at, format!("{path}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| DocError::new(at, format!("{path}: not a PEM certificate: {e}")))?;
            reqwest::Client::builder()
                .add_root_certificate(cert)
                .build()
                .map_err(|e| DocError::new(at, e.to_string()))?
        }
    };
    let token_file = match token_file {
        None => None,
        Some(path) => {
            let at = "/spec/auth/oidc/tokenFile";
            SecretRef::File { file: path.clone() }
                .resolve(ctx.base_dir, ctx.secret_roots)
                .map_err(|m| DocError::new(at, m))?;
            Some(if std::path::Path::new(&path).is_absolute() {
                path.into()
            } else {
                ctx.base_dir.join(path)
            })
        }
    };
    Ok(super::oidc::Reach { http, token_file })
}

/// Compiles a Source document's `spec`.
pub fn compile(name: &str, spec: &Value, ctx: &mut DocCtx<'_>) -> Result<SourceDef, Vec<DocError>> {
    let carries_recipients = spec["preset"]
        .as_str()
        .is_some_and(preset::carries_recipients);
    let mut spec = spec.clone();
    preset::apply(&mut spec).map_err(|m| vec![DocError::new("/spec/preset", m)])?;
    let spec: SourceSpec = parse_spec(&spec)?;
    let mut errors = Vec::new();
    let auth = match spec.auth {
        AuthSpec::None(_) => Auth::None,
        AuthSpec::Token { token } => {
            let secret = ctx.secret(&token.secret, "/spec/auth/token/secret");
            match (token.header, secret) {
                (Some(header), Ok(secret)) => Auth::Token { header, secret },
                (None, _) => {
                    errors.push(DocError::new(
                        "/spec/auth/token/header",
                        "name the header that carries the token (e.g. X-CNB-Token)",
                    ));
                    Auth::None
                }
                (_, Err(e)) => {
                    errors.push(e);
                    Auth::None
                }
            }
        }
        AuthSpec::Hmac { hmac } => match ctx.secret(&hmac.secret, "/spec/auth/hmac/secret") {
            Ok(secret) => Auth::Hmac {
                header: hmac.header.unwrap_or_else(|| match hmac.style {
                    HmacStyle::Hex => "X-Gitea-Signature".into(),
                    _ => "X-Hub-Signature-256".into(),
                }),
                secret,
                style: hmac.style,
            },
            Err(e) => {
                errors.push(e);
                Auth::None
            }
        },
        AuthSpec::StandardWebhooks {
            standard_webhooks: sw,
        } => {
            let tolerance = match sw
                .tolerance
                .as_deref()
                .map(|t| parse_duration("tolerance", t))
            {
                None => Duration::from_secs(300),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    errors.push(DocError::new(
                        "/spec/auth/standardWebhooks/tolerance",
                        e.to_string(),
                    ));
                    Duration::from_secs(300)
                }
            };
            let path = "/spec/auth/standardWebhooks/secret";
            match ctx.secret(&sw.secret, path).and_then(|key| {
                signature::decode_whsec(key.expose())
                    .map(SecretBytes::new)
                    .map_err(|m| DocError::new(path, m))
            }) {
                Ok(key) => Auth::StandardWebhooks { key, tolerance },
                Err(e) => {
                    errors.push(e);
                    Auth::None
                }
            }
        }
        AuthSpec::Oidc { oidc } => match compile_oidc(oidc, ctx) {
            Ok(v) => Auth::Oidc(std::sync::Arc::new(v)),
            Err(e) => {
                errors.push(e);
                Auth::None
            }
        },
    };
    let mut extractors = |list: Option<OneOrMany<ExtractorSpec>>, path: &str| -> Vec<Extractor> {
        let mut out = Vec::new();
        for (i, x) in list
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match compile_extractor(x) {
                Ok(e) => out.push(e),
                Err(m) => errors.push(DocError::new(format!("{path}/{i}"), m)),
            }
        }
        out
    };
    let event = EventRules {
        ty: extractors(spec.event.ty, "/spec/event/type"),
        id: extractors(spec.event.id, "/spec/event/id"),
        subject: extractors(spec.event.subject, "/spec/event/subject"),
        extensions: spec
            .event
            .extensions
            .into_iter()
            .map(|(k, v)| {
                let path = format!("/spec/event/extensions/{k}");
                (k, extractors(Some(v), &path))
            })
            .collect(),
    };
    let mut window = |w: Option<String>, field: &'static str| -> Option<Duration> {
        let path = format!("/spec/dedup/{field}");
        match parse_duration(field, &w?) {
            Ok(d) if d <= ctx.settings.retention => Some(d),
            Ok(_) => {
                errors.push(DocError::new(
                    path,
                    "cannot be longer than the relay's retention setting",
                ));
                None
            }
            Err(e) => {
                errors.push(DocError::new(path, e.to_string()));
                None
            }
        }
    };
    let (window_spec, content_spec) = spec
        .dedup
        .map_or((None, None), |d| (d.window, d.content_window));
    let dedup_window = window(window_spec, "window");
    let content_dedup_window = window(content_spec, "contentWindow");
    let formats = if spec.formats.is_empty() {
        vec!["json".to_string()]
    } else {
        spec.formats
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SourceDef {
        name: name.to_string(),
        json: formats.iter().any(|f| f == "json"),
        cloudevents: formats.iter().any(|f| f == "cloudevents"),
        auth,
        event,
        dedup_window,
        content_dedup_window,
        max_body_bytes: spec.max_body_bytes,
        carries_recipients,
    })
}

fn compile_extractor(x: ExtractorSpec) -> Result<Extractor, String> {
    let from = match (x.header, x.pointer, x.value, x.template) {
        (Some(h), None, None, None) => Extract::Header(h),
        (None, Some(p), None, None) => Extract::Pointer(p),
        (None, None, Some(v), None) => Extract::Value(v),
        (None, None, None, Some(t)) => Extract::Template(Tpl::compile(&t)?),
        _ => return Err("give exactly one of header, pointer, value, template".into()),
    };
    Ok(Extractor {
        from,
        prefix: x.prefix,
        lowercase: x.lowercase,
    })
}
