//! The demo shop: a few static pages that embed the Footpath snippet, served from an
//! origin other than the collector's so that CORS is exercised for real.
//!
//! Pages are compiled in (`include_str!`) and share `site/layout.html`, whose
//! `{{snippet}}` marker is replaced, per request, by the snippet from `js/snippet.min.js` with
//! this server's collector URL and deployment id.
//!
//! The shop is also "the site's server" of the identity docs (`docs/identity.md`): with
//! an identity secret, `POST /account/sign-in` signs the identity token that its
//! sign-in page passes to `ac('identify')`, so that a sign-in links the visitor's
//! browser to the customer as a verified identity. Being a demo, it signs in anyone
//! who gives an email; a real site would do so only after checking a password.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The snippet sites paste into their pages, with placeholders.
pub const SNIPPET: &str = include_str!("../../js/snippet.min.js");

/// Every page shares one layout (head with the snippet, header, footer); a page is its
/// path, title, keywords and the content of its `<main>`.
const LAYOUT: &str = include_str!("../site/layout.html");

struct Page {
    path: &'static str,
    title: &'static str,
    keywords: &'static str,
    main: &'static str,
}

const PAGES: &[Page] = &[
    Page {
        path: "/",
        title: "Trailhead Outfitters — Home",
        keywords: "outdoor, hiking, boots",
        main: include_str!("../site/index.html"),
    },
    Page {
        path: "/products",
        title: "Products — Trailhead Outfitters",
        keywords: "products, boots, tents, jackets",
        main: include_str!("../site/products.html"),
    },
    Page {
        path: "/product",
        title: "Product — Trailhead Outfitters",
        keywords: "product",
        main: include_str!("../site/product.html"),
    },
    Page {
        path: "/checkout",
        title: "Checkout — Trailhead Outfitters",
        keywords: "checkout",
        main: include_str!("../site/checkout.html"),
    },
    Page {
        path: "/signin",
        title: "Sign in — Trailhead Outfitters",
        keywords: "account",
        main: include_str!("../site/signin.html"),
    },
];

/// The help centre: a single-page app (its paths start with `/support`) whose head
/// holds a snippet written for the Journey SDK instead of Footpath's (see
/// [`DemoConfig::journey_snippet_tag`]).
const SUPPORT: Page = Page {
    path: "/support",
    title: "Help centre — Trailhead Outfitters",
    keywords: "help, support, contact",
    main: include_str!("../site/support.html"),
};

/// The shop's own script and style.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/assets/shop.js",
        "text/javascript; charset=utf-8",
        include_str!("../site/shop.js"),
    ),
    (
        "/assets/shop.css",
        "text/css; charset=utf-8",
        include_str!("../site/shop.css"),
    ),
];

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Base URL of the collector, e.g. `http://127.0.0.1:8700`.
    pub collector_url: String,
    pub deployment_id: String,
    /// Extra `ac('init')` options as a JavaScript object literal, e.g.
    /// `{sessionTimeoutMinutes: 1}`; tests use it.
    pub init_options: Option<String>,
    /// The deployment's identity secret, shared with the collector: with it the shop
    /// signs identity tokens at sign-in. Without it, sign-ins are unverified claims.
    pub identity_secret: Option<String>,
}

impl DemoConfig {
    /// The `<script>` element every page gets.
    pub fn snippet_tag(&self) -> String {
        let init = match &self.init_options {
            Some(options) => format!("ac('init','{}',{options});", self.deployment_id),
            None => format!("ac('init','{}');", self.deployment_id),
        };
        let snippet = SNIPPET
            .trim()
            .replace("COLLECTOR_URL", self.collector_url.trim_end_matches('/'))
            .replace("ac('init','DEPLOYMENT_ID');", &init);
        format!("<script>{snippet}</script>")
    }

    /// The help centre's head: the snippet shape of pages written for the Journey SDK,
    /// with only the script URL changed. The global is named through
    /// `_genesysJourneySdk`; `init` passes a `region` (accepted and ignored), and the
    /// page records its page view itself, then loads URL-change tracking and tracks
    /// its contact form.
    pub fn journey_snippet_tag(&self) -> String {
        let options = self.init_options.as_deref().unwrap_or("{}");
        let collector = self.collector_url.trim_end_matches('/');
        let deployment = &self.deployment_id;
        format!(
            "<script>\n\
             (function (win, doc, src, name) {{\n\
               win._genesysJourneySdk = name;\n\
               win[name] = win[name] || function () {{ (win[name].q = win[name].q || []).push(arguments); }};\n\
               win[name].t = 1 * new Date();\n\
               var script = doc.createElement('script');\n\
               script.async = 1; script.src = src; script.charset = 'utf-8';\n\
               var first = doc.getElementsByTagName('script')[0];\n\
               first.parentNode.insertBefore(script, first);\n\
             }})(window, document, '{collector}/sdk/footpath.js', 'ac');\n\
             ac('init', '{deployment}', Object.assign({{ region: 'use1' }}, {options}));\n\
             ac('pageview');\n\
             ac('load', 'autotrackUrlChange');\n\
             ac('forms:track', '#contact-form', {{\n\
               formName: 'contact',\n\
               captureFormDataOnSubmit: true,\n\
               captureFormDataOnAbandon: true,\n\
               customAttributes: {{ channel: 'web' }},\n\
               traitsMapper: [{{ fieldName: 'email', traitName: 'email' }}]\n\
             }});\n\
             </script>"
        )
    }
}

pub fn router(config: DemoConfig) -> Router {
    Router::new()
        .route("/account/sign-in", post(sign_in))
        .fallback(page)
        // A sign-in form is a few hundred bytes.
        .layer(axum::extract::DefaultBodyLimit::max(4_096))
        .with_state(Arc::new(config))
}

/// The visitor cookie the SDK sets on the site's own domain.
const VISITOR_COOKIE: &str = "_footpath_vid";
/// How long a signed identity is valid.
const TOKEN_LIFETIME_SECONDS: u64 = 3_600;

/// The sign-in form. Its one name field is a display name, not a given and a family
/// name, so the token carries no name claims: a contact's names stay as the CRM has
/// them. Unknown fields (the page sends only the email) are ignored.
#[derive(Deserialize)]
struct SignIn {
    email: String,
}

/// `POST /account/sign-in`: signs the visitor in (anyone, it is a demo) and answers
/// the identity token the page hands to `ac('identify')`. The token names the email,
/// and is bound to this browser's visitor cookie when the request carries one.
async fn sign_in(
    State(config): State<Arc<DemoConfig>>,
    headers: HeaderMap,
    Json(form): Json<SignIn>,
) -> Response {
    let Some(secret) = &config.identity_secret else {
        return (StatusCode::NOT_FOUND, "this demo signs no identities").into_response();
    };
    let email = form.email.trim();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return (StatusCode::BAD_REQUEST, "email: must be an email address").into_response();
    }
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs())
        + TOKEN_LIFETIME_SECONDS;
    let mut claims = serde_json::Map::new();
    claims.insert("aud".into(), json!(config.deployment_id));
    claims.insert("exp".into(), json!(expires));
    claims.insert("sub".into(), json!(email));
    claims.insert("email".into(), json!(email));
    if let Some(visitor) = visitor_cookie(&headers) {
        claims.insert("vid".into(), json!(visitor));
    }
    let token = footpath_collector::identity::sign_identity_token(secret, &claims);
    Json(json!({ "identityToken": token })).into_response()
}

fn visitor_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| {
            cookie
                .trim()
                .strip_prefix(VISITOR_COOKIE)?
                .strip_prefix('=')
        })
        .filter(|value| value.len() == 36)
}

async fn page(State(config): State<Arc<DemoConfig>>, uri: Uri) -> Response {
    let path = uri.path().trim_end_matches(".html");
    let support = path == SUPPORT.path || path.starts_with("/support/");
    let found = if support {
        Some(&SUPPORT)
    } else {
        PAGES.iter().find(|page| page.path == path)
    };
    if let Some(page) = found {
        let snippet = if support {
            config.journey_snippet_tag()
        } else {
            config.snippet_tag()
        };
        let body = LAYOUT
            .replace("{{snippet}}", &snippet)
            .replace("{{title}}", page.title)
            .replace("{{keywords}}", page.keywords)
            .replace("{{main}}", page.main);
        return respond("text/html; charset=utf-8", body);
    }
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => respond(content_type, (*body).to_owned()),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

/// `no-cache` rather than `no-store`: always revalidated, but a page may still be kept
/// in the browser's back/forward cache, as on most real sites, which the SDK must not
/// prevent.
fn respond(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Serves the demo on `listener` until `shutdown` completes.
pub async fn serve(
    config: DemoConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}
