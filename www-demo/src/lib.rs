//! The demo shop: a few static pages that embed the Footpath snippet, served from an
//! origin other than the collector's so that CORS is exercised for real.
//!
//! Pages are compiled in (`include_str!`) and share `site/layout.html`, whose
//! `{{snippet}}` marker is replaced, per request, by the snippet from `js/snippet.min.js` with
//! this server's collector URL and deployment id.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

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
    Page { path: "/", title: "Trailhead Outfitters — Home", keywords: "outdoor, hiking, boots", main: include_str!("../site/index.html") },
    Page { path: "/products", title: "Products — Trailhead Outfitters", keywords: "products, boots, tents, jackets", main: include_str!("../site/products.html") },
    Page { path: "/product", title: "Product — Trailhead Outfitters", keywords: "product", main: include_str!("../site/product.html") },
    Page { path: "/checkout", title: "Checkout — Trailhead Outfitters", keywords: "checkout", main: include_str!("../site/checkout.html") },
    Page { path: "/signin", title: "Sign in — Trailhead Outfitters", keywords: "account", main: include_str!("../site/signin.html") },
];

/// The shop's own script and style.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/assets/shop.js", "text/javascript; charset=utf-8", include_str!("../site/shop.js")),
    ("/assets/shop.css", "text/css; charset=utf-8", include_str!("../site/shop.css")),
];

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Base URL of the collector, e.g. `http://127.0.0.1:8700`.
    pub collector_url: String,
    pub deployment_id: String,
    /// Extra `ac('init')` options as a JavaScript object literal, e.g.
    /// `{sessionTimeoutMinutes: 1}`; tests use it.
    pub init_options: Option<String>,
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
}

pub fn router(config: DemoConfig) -> Router {
    Router::new().fallback(page).with_state(Arc::new(config))
}

async fn page(State(config): State<Arc<DemoConfig>>, uri: Uri) -> Response {
    let path = uri.path().trim_end_matches(".html");
    if let Some(page) = PAGES.iter().find(|page| page.path == path) {
        let body = LAYOUT
            .replace("{{snippet}}", &config.snippet_tag())
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
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Serves the demo on `listener` until `shutdown` completes.
pub async fn serve(
    config: DemoConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await
}
