//! Contacts on PostgreSQL: shared by the ingest transaction (identity resolution) and
//! the contacts API. Whoever writes a contact holds its advisory lock
//! ([`LockSpace::Contact`]).

use super::super::contacts_sql::search_columns;
use super::super::sqlite::to_json;
use super::connection::Tx;
use super::rows::{contact_from_row, identifier_from_row, CONTACT_SELECT};
use crate::contacts::{email_identifier, ContactFields};
use crate::model::{ContactPage, ContactQuery, IdentifierKind, StoreError, StoredContact};

/// The contact with its identifiers, as of this transaction.
pub(super) fn load_contact(
    tx: &mut Tx<'_>,
    contact_id: &str,
) -> Result<Option<StoredContact>, StoreError> {
    let Some(row) = tx.query_opt(&format!("{CONTACT_SELECT} WHERE id = $1"), &[&contact_id])?
    else {
        return Ok(None);
    };
    let contact = contact_from_row(&row)?;
    Ok(Some(StoredContact {
        identifiers: identifiers_of(tx, &contact.id)?,
        ..contact
    }))
}

pub(super) fn identifiers_of(
    tx: &mut Tx<'_>,
    contact_id: &str,
) -> Result<Vec<crate::model::StoredIdentifier>, StoreError> {
    tx.query(
        "SELECT type, value, created_ms FROM contact_identifiers WHERE contact_id = $1
         ORDER BY CASE type WHEN 'Email' THEN 0 WHEN 'Phone' THEN 1 ELSE 2 END,
                  created_ms, value",
        &[&contact_id],
    )?
    .iter()
    .map(identifier_from_row)
    .collect()
}

/// Writes the fields, moves `modifyDate`, and brings the Email and Phone identifiers
/// in line with the fields (the ones that stay keep their `dateCreated`). Returns
/// whether the contact exists. The caller holds the contact's lock.
pub(super) fn write_contact_fields(
    tx: &mut Tx<'_>,
    contact_id: &str,
    fields: &ContactFields,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (search_text, search_phones) = search_columns(fields);
    let phone = |phone: Option<&crate::contacts::PhoneNumber>| to_json(phone);
    let updated = tx.execute(
        "UPDATE contacts SET first_name = $2, middle_name = $3, last_name = $4,
            salutation = $5, title = $6, work_email = $7, personal_email = $8,
            other_email = $9, work_phone_json = $10, cell_phone_json = $11,
            home_phone_json = $12, other_phone_json = $13, search_text = $14,
            search_phones = $15, modify_ms = $16
         WHERE id = $1",
        &[
            &contact_id,
            &fields.first_name,
            &fields.middle_name,
            &fields.last_name,
            &fields.salutation,
            &fields.title,
            &fields.work_email,
            &fields.personal_email,
            &fields.other_email,
            &phone(fields.work_phone.as_ref())?,
            &phone(fields.cell_phone.as_ref())?,
            &phone(fields.home_phone.as_ref())?,
            &phone(fields.other_phone.as_ref())?,
            &search_text,
            &search_phones,
            &now_ms,
        ],
    )?;
    if updated == 0 {
        return Ok(false);
    }
    let wanted: Vec<(IdentifierKind, String)> = fields
        .emails()
        .map(|email| (IdentifierKind::Email, email_identifier(email)))
        .chain(
            fields
                .phones()
                .map(|phone| (IdentifierKind::Phone, phone.e164.clone())),
        )
        .collect();
    for identifier in identifiers_of(tx, contact_id)? {
        let derived = matches!(
            identifier.kind,
            IdentifierKind::Email | IdentifierKind::Phone
        );
        let still_wanted = wanted
            .iter()
            .any(|(kind, value)| *kind == identifier.kind && *value == identifier.value);
        if derived && !still_wanted {
            tx.execute(
                "DELETE FROM contact_identifiers
                 WHERE contact_id = $1 AND type = $2 AND value = $3",
                &[&contact_id, &identifier.kind.as_str(), &identifier.value],
            )?;
        }
    }
    for (kind, value) in &wanted {
        tx.execute(
            "INSERT INTO contact_identifiers (contact_id, type, value, created_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&contact_id, &kind.as_str(), value, &now_ms],
        )?;
    }
    Ok(true)
}

/// A page of contacts matching the query (see `ContactQuery`), and how many match.
pub(super) fn search_contacts(
    tx: &mut Tx<'_>,
    query: &ContactQuery,
) -> Result<ContactPage, StoreError> {
    let text = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_lowercase);
    // A query that looks like a phone number also matches the digits of phone numbers,
    // whatever the punctuation.
    let digits = text.as_deref().and_then(|text| {
        let phone_like = text
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        (phone_like && !digits.is_empty()).then_some(digits)
    });
    const FILTER: &str = "($1::text IS NULL OR strpos(search_text, $1) > 0
                           OR ($2::text IS NOT NULL AND strpos(search_phones, $2) > 0))";
    let total: i64 = tx
        .query_one(
            &format!("SELECT COUNT(*) FROM contacts WHERE {FILTER}"),
            &[&text, &digits],
        )?
        .try_get(0)?;
    let offset = query
        .page_number
        .saturating_sub(1)
        .saturating_mul(query.page_size);
    let to_sql = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
    let rows = tx.query(
        &format!("{CONTACT_SELECT} WHERE {FILTER} ORDER BY create_ms, id LIMIT $3 OFFSET $4"),
        &[&text, &digits, &to_sql(query.page_size), &to_sql(offset)],
    )?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let contact = contact_from_row(row)?;
        items.push(StoredContact {
            identifiers: identifiers_of(tx, &contact.id)?,
            ..contact
        });
    }
    Ok(ContactPage {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}
