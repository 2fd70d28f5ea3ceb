//! Listings of the API, in one place: the query parameters (`pageSize`, `pageNumber`,
//! `after`, filters), and the URIs of the next page, by cursor (`after`: the id of the
//! last entity of the page) or by page number.

use std::collections::HashMap;

use crate::error::ApiError;

pub(super) const DEFAULT_PAGE_SIZE: usize = 25;
pub(super) const MAX_PAGE_SIZE: usize = 100;

/// Query parameters, decoded by hand so that a bad value gets an error message that
/// names the parameter. Unknown parameters are ignored; of repeated ones the last wins.
pub(super) struct QueryParameters(HashMap<String, String>);

impl QueryParameters {
    pub(super) fn parse(query: Option<&str>) -> QueryParameters {
        let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
        QueryParameters(pairs.into_owned().collect())
    }

    /// A parameter's value; an empty value counts as absent.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|value| !value.is_empty()).cloned()
    }

    /// `pageNumber`, from 1 (the default).
    pub(super) fn page_number(&self) -> Result<usize, ApiError> {
        let Some(text) = self.text("pageNumber") else {
            return Ok(1);
        };
        match text.parse::<usize>() {
            Ok(number) if number >= 1 => Ok(number),
            _ => Err(ApiError::BadRequest(format!(
                "pageNumber: must be a whole number from 1, not {text:?}"
            ))),
        }
    }

    /// `pageSize`, from 1 to [`MAX_PAGE_SIZE`]; [`DEFAULT_PAGE_SIZE`] when absent.
    pub(super) fn page_size(&self) -> Result<usize, ApiError> {
        let Some(text) = self.text("pageSize") else {
            return Ok(DEFAULT_PAGE_SIZE);
        };
        match text.parse::<usize>() {
            Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
            _ => Err(ApiError::BadRequest(format!(
                "pageSize: must be a whole number from 1 to {MAX_PAGE_SIZE}, not {text:?}"
            ))),
        }
    }
}

pub(super) fn uri_with_query(path: &str, parameters: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in parameters {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("{path}?{}", query.finish())
}

/// The `nextUri` of a cursor-paged listing: `path` with `filters`, the page size and
/// `after` = the last entity's id, when more entities follow.
pub(super) fn next_page_uri(
    path: &str,
    filters: &[(&str, Option<String>)],
    page_size: usize,
    has_more: bool,
    last_id: Option<&str>,
) -> Option<String> {
    let last_id = last_id.filter(|_| has_more)?;
    let mut parameters = filters.to_vec();
    parameters.push(("pageSize", Some(page_size.to_string())));
    parameters.push(("after", Some(last_id.to_owned())));
    Some(uri_with_query(path, &parameters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_uris_carry_the_filters_the_size_and_the_cursor() {
        let filters = [("deploymentId", Some("shop".to_owned())), ("q", None)];
        assert_eq!(
            next_page_uri("/list", &filters, 10, true, Some("a b")),
            Some("/list?deploymentId=shop&pageSize=10&after=a+b".to_owned())
        );
        assert_eq!(next_page_uri("/list", &filters, 10, false, Some("x")), None);
        assert_eq!(next_page_uri("/list", &filters, 10, true, None), None);
    }

    #[test]
    fn page_numbers_and_sizes_are_checked() {
        let parse = |query: &str| QueryParameters::parse(Some(query));
        assert_eq!(parse("").page_number().unwrap(), 1);
        assert_eq!(parse("pageNumber=3").page_number().unwrap(), 3);
        assert!(parse("pageNumber=0").page_number().is_err());
        assert_eq!(parse("").page_size().unwrap(), DEFAULT_PAGE_SIZE);
        assert!(parse("pageSize=101").page_size().is_err());
    }
}
