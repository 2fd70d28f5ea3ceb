//! `GET /desk/usage?from=&to=`: the usage figures per deployment and day
//! (`crate::usage`) as one server-rendered page, for the desk's administrators: those
//! signed in with an API token (an agent's token gets 403; nobody signed in is sent
//! to the sign-in page). No script: a form and a table, every value escaped.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::DeskState;
use crate::app::usage::{usage_report, UsageDayReport, UsageReport};

/// Kinds with a column of their own; others are listed under "Other".
const KIND_COLUMNS: [(&str, &str); 4] = [
    ("pageview", "Page views"),
    ("record", "Custom events"),
    ("identify", "Identify"),
    ("logout", "Logout"),
];

pub(super) async fn usage_page(
    State(state): State<DeskState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match state.agent_session(&headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Redirect::to("/desk/signin").into_response(),
        Err(error) => return error.into_response(),
    };
    let admin = state
        .desk
        .agents
        .signed_in_with_one_of(
            &session,
            state.app.clock().now_ms(),
            &state.app.config().api_tokens,
        )
        .await;
    let admin = match admin {
        Ok(admin) => admin,
        Err(error) => return crate::error::ApiError::from(error).into_response(),
    };
    if !admin {
        return (
            StatusCode::FORBIDDEN,
            Html(page(
                "<p class=\"usage-error\">Usage is for administrators: sign in with an API token.</p>",
            )),
        )
            .into_response();
    }
    match usage_report(&state.app, query.as_deref()).await {
        Ok(report) => Html(page(&render_report(&report))).into_response(),
        Err(error) => (
            error.status(),
            Html(page(&format!(
                "{}<p class=\"usage-error\">{}</p>",
                range_form("", ""),
                escape(&error.to_string())
            ))),
        )
            .into_response(),
    }
}

fn page(body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Footpath — usage</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <link rel=\"stylesheet\" href=\"/desk/assets/desk.css\">\n</head>\n<body class=\"usage\">\n\
         <header class=\"topbar\"><h1>Footpath <span class=\"subtitle\">usage</span></h1>\
         <a href=\"/desk/\">Desk</a></header>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
}

fn range_form(from: &str, to: &str) -> String {
    format!(
        "<form method=\"get\" action=\"/desk/usage\" class=\"usage-range\">\
         <label>From <input type=\"date\" name=\"from\" value=\"{}\"></label> \
         <label>To <input type=\"date\" name=\"to\" value=\"{}\"></label> \
         <button type=\"submit\">Show</button></form>",
        escape(from),
        escape(to)
    )
}

fn render_report(report: &UsageReport) -> String {
    let mut html = range_form(&report.from, &report.to);
    html.push_str(&format!(
        "<p>Per UTC day, {} to {}. A day's accepted events and sessions appear once it is over; \
         refusals within a minute.</p>",
        escape(&report.from),
        escape(&report.to)
    ));
    if report.days.is_empty() {
        html.push_str("<p class=\"usage-empty\">No figures in this range.</p>");
        return html;
    }
    html.push_str("<table class=\"usage-table\"><thead><tr><th>Deployment</th><th>Day</th>");
    for (_, label) in KIND_COLUMNS {
        html.push_str(&format!("<th>{label}</th>"));
    }
    html.push_str(
        "<th>Other events</th><th>Refused</th><th>New sessions</th><th>Sessions</th>\
         <th>Identified sessions</th></tr></thead><tbody>",
    );
    for day in &report.days {
        html.push_str(&render_day(day));
    }
    html.push_str("</tbody></table>");
    html
}

fn render_day(day: &UsageDayReport) -> String {
    let cell = |text: &str| format!("<td>{}</td>", escape(text));
    let mut row = String::from("<tr>");
    row.push_str(&cell(&day.deployment_id));
    let complete = if day.complete { "" } else { " (so far)" };
    row.push_str(&cell(&format!("{}{complete}", day.day)));
    for (kind, _) in KIND_COLUMNS {
        row.push_str(&cell(
            &day.events_accepted
                .get(kind)
                .copied()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    let listed = |figures: &mut dyn Iterator<Item = (&String, &u64)>| -> String {
        figures
            .map(|(name, count)| format!("{name}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row.push_str(&cell(&listed(&mut day.events_accepted.iter().filter(
        |(kind, _)| !KIND_COLUMNS.iter().any(|(column, _)| column == kind),
    ))));
    row.push_str(&cell(&listed(&mut day.events_refused.iter())));
    for count in [
        day.new_sessions,
        day.total_sessions,
        day.identified_sessions,
    ] {
        row.push_str(&cell(&count.to_string()));
    }
    row.push_str("</tr>");
    row
}

/// Text as HTML: the five characters that could end a text node or an attribute
/// value.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        let table = [
            ("plain", "plain"),
            ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
            ("a\"b'c&d", "a&quot;b&#39;c&amp;d"),
            ("", ""),
        ];
        for (text, expected) in table {
            assert_eq!(escape(text), expected, "{text}");
        }
    }

    #[test]
    fn a_day_row_escapes_every_value() {
        let mut day = UsageDayReport {
            deployment_id: "<shop>".to_owned(),
            day: "2026-11-24".to_owned(),
            complete: false,
            events_accepted: Default::default(),
            events_refused: Default::default(),
            new_sessions: 1,
            total_sessions: 2,
            identified_sessions: 0,
        };
        day.events_accepted.insert("pageview".to_owned(), 3);
        day.events_accepted.insert("<form>".to_owned(), 4);
        day.events_refused.insert("rate_limited".to_owned(), 5);
        let row = render_day(&day);
        assert_eq!(
            row,
            "<tr><td>&lt;shop&gt;</td><td>2026-11-24 (so far)</td><td>3</td><td>0</td><td>0</td>\
             <td>0</td><td>&lt;form&gt;: 4</td><td>rate_limited: 5</td><td>1</td><td>2</td>\
             <td>0</td></tr>"
        );
    }
}
