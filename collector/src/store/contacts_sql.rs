//! The SQL of external contacts and of identity resolution, for the SQLite backend.
//!
//! Every function takes a connection (or an open transaction, which derefs to one), so
//! that the contact API and the ingest transaction share them. The rules themselves
//! are in [`crate::identity`]; this module looks up what they need and applies their
//! [`Decision`].

use rusqlite::{params, Connection, Row};

use super::{
    ContactPage, ContactQuery, IdentifierKind, StoreError, StoredContact, StoredIdentifier,
};
use crate::contacts::{email_identifier, ContactFields, PhoneNumber, CURATED};

/// The columns of a contact row, in the order [`contact_from_row`] reads them.
const CONTACT_SELECT: &str = "SELECT id, contact_type, first_name, middle_name, last_name,
    salutation, title, work_email, personal_email, other_email,
    work_phone_json, cell_phone_json, home_phone_json, other_phone_json,
    create_ms, modify_ms
    FROM contacts";

fn contact_from_row(row: &Row<'_>) -> Result<StoredContact, StoreError> {
    let phone = |index: usize| -> Result<Option<PhoneNumber>, StoreError> {
        Ok(row
            .get::<_, Option<String>>(index)?
            .map(|json| serde_json::from_str(&json))
            .transpose()?)
    };
    Ok(StoredContact {
        id: row.get(0)?,
        contact_type: row.get(1)?,
        fields: ContactFields {
            first_name: row.get(2)?,
            middle_name: row.get(3)?,
            last_name: row.get(4)?,
            salutation: row.get(5)?,
            title: row.get(6)?,
            work_email: row.get(7)?,
            personal_email: row.get(8)?,
            other_email: row.get(9)?,
            work_phone: phone(10)?,
            cell_phone: phone(11)?,
            home_phone: phone(12)?,
            other_phone: phone(13)?,
        },
        identifiers: Vec::new(),
        create_ms: row.get(14)?,
        modify_ms: row.get(15)?,
    })
}

fn phone_json(phone: Option<&PhoneNumber>) -> Result<Option<String>, StoreError> {
    Ok(phone.map(serde_json::to_string).transpose()?)
}

/// What the `q` search looks in: lowercased names (each, and "first last") and
/// emails, one per line; and the digits of each E.164 number.
pub(super) fn search_columns(fields: &ContactFields) -> (String, String) {
    let mut lines: Vec<String> = [&fields.first_name, &fields.middle_name, &fields.last_name]
        .into_iter()
        .flatten()
        .map(|name| name.to_lowercase())
        .collect();
    let full_name: Vec<&str> = [&fields.first_name, &fields.middle_name, &fields.last_name]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    lines.push(full_name.join(" ").to_lowercase());
    if let (Some(first), Some(last)) = (&fields.first_name, &fields.last_name) {
        lines.push(format!("{first} {last}").to_lowercase());
    }
    lines.extend(fields.emails().map(str::to_lowercase));
    let phones: Vec<&str> = fields
        .phones()
        .map(|phone| phone.e164.trim_start_matches('+'))
        .collect();
    (lines.join("\n"), phones.join(" "))
}

pub(super) fn insert_contact(
    connection: &Connection,
    fields: &ContactFields,
    now_ms: i64,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (search_text, search_phones) = search_columns(fields);
    connection
        .prepare_cached(
            "INSERT INTO contacts (id, contact_type, create_ms, modify_ms) VALUES (?1, ?2, ?3, ?3)",
        )?
        .execute(params![id, CURATED, now_ms])?;
    write_fields(
        connection,
        &id,
        fields,
        now_ms,
        &search_text,
        &search_phones,
    )?;
    Ok(id)
}

/// Writes the fields, moves `modifyDate`, and brings the Email and Phone identifiers
/// in line with the fields. Returns whether the contact exists.
pub(super) fn update_contact(
    connection: &Connection,
    contact_id: &str,
    fields: &ContactFields,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (search_text, search_phones) = search_columns(fields);
    write_fields(
        connection,
        contact_id,
        fields,
        now_ms,
        &search_text,
        &search_phones,
    )
}

fn write_fields(
    connection: &Connection,
    contact_id: &str,
    fields: &ContactFields,
    now_ms: i64,
    search_text: &str,
    search_phones: &str,
) -> Result<bool, StoreError> {
    let updated = connection
        .prepare_cached(
            "UPDATE contacts SET first_name = ?2, middle_name = ?3, last_name = ?4,
                salutation = ?5, title = ?6, work_email = ?7, personal_email = ?8,
                other_email = ?9, work_phone_json = ?10, cell_phone_json = ?11,
                home_phone_json = ?12, other_phone_json = ?13, search_text = ?14,
                search_phones = ?15, modify_ms = ?16
             WHERE id = ?1",
        )?
        .execute(params![
            contact_id,
            fields.first_name,
            fields.middle_name,
            fields.last_name,
            fields.salutation,
            fields.title,
            fields.work_email,
            fields.personal_email,
            fields.other_email,
            phone_json(fields.work_phone.as_ref())?,
            phone_json(fields.cell_phone.as_ref())?,
            phone_json(fields.home_phone.as_ref())?,
            phone_json(fields.other_phone.as_ref())?,
            search_text,
            search_phones,
            now_ms,
        ])?;
    if updated == 0 {
        return Ok(false);
    }
    sync_identifiers(connection, contact_id, fields, now_ms)?;
    Ok(true)
}

/// Email and Phone identifiers are exactly the contact's emails (ASCII-folded, see
/// [`email_identifier`]) and
/// phones (E.164); the ones that stay keep their `dateCreated`.
fn sync_identifiers(
    connection: &Connection,
    contact_id: &str,
    fields: &ContactFields,
    now_ms: i64,
) -> Result<(), StoreError> {
    let wanted: Vec<(IdentifierKind, String)> = fields
        .emails()
        .map(|email| (IdentifierKind::Email, email_identifier(email)))
        .chain(
            fields
                .phones()
                .map(|phone| (IdentifierKind::Phone, phone.e164.clone())),
        )
        .collect();
    let existing = identifiers_of(connection, contact_id)?;
    for identifier in &existing {
        let derived = matches!(
            identifier.kind,
            IdentifierKind::Email | IdentifierKind::Phone
        );
        let still_wanted = wanted
            .iter()
            .any(|(kind, value)| *kind == identifier.kind && *value == identifier.value);
        if derived && !still_wanted {
            connection
                .prepare_cached(
                    "DELETE FROM contact_identifiers
                     WHERE contact_id = ?1 AND type = ?2 AND value = ?3",
                )?
                .execute(params![
                    contact_id,
                    identifier.kind.as_str(),
                    identifier.value
                ])?;
        }
    }
    for (kind, value) in &wanted {
        connection
            .prepare_cached(
                "INSERT OR IGNORE INTO contact_identifiers (contact_id, type, value, created_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![contact_id, kind.as_str(), value, now_ms])?;
    }
    Ok(())
}

fn identifiers_of(
    connection: &Connection,
    contact_id: &str,
) -> Result<Vec<StoredIdentifier>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT type, value, created_ms FROM contact_identifiers WHERE contact_id = ?1
         ORDER BY CASE type WHEN 'Email' THEN 0 WHEN 'Phone' THEN 1 ELSE 2 END,
                  created_ms, value",
    )?;
    let mut rows = statement.query([contact_id])?;
    let mut identifiers = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        identifiers.push(StoredIdentifier {
            kind: IdentifierKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown identifier type {kind:?}")))?,
            value: row.get(1)?,
            created_ms: row.get(2)?,
        });
    }
    Ok(identifiers)
}

pub(super) fn load_contact(
    connection: &Connection,
    contact_id: &str,
) -> Result<Option<StoredContact>, StoreError> {
    let contact = {
        let mut statement =
            connection.prepare_cached(&format!("{CONTACT_SELECT} WHERE id = ?1"))?;
        let mut rows = statement.query([contact_id])?;
        match rows.next()? {
            Some(row) => contact_from_row(row)?,
            None => return Ok(None),
        }
    };
    Ok(Some(StoredContact {
        identifiers: identifiers_of(connection, &contact.id)?,
        ..contact
    }))
}

pub(super) fn search_contacts(
    connection: &Connection,
    query: &ContactQuery,
) -> Result<ContactPage, StoreError> {
    let text = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_lowercase);
    // A query that looks like a phone number (digits and the usual punctuation) also
    // matches the digits of phone numbers, whatever the punctuation.
    let digits = text.as_deref().and_then(|text| {
        let phone_like = text
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        (phone_like && !digits.is_empty()).then_some(digits)
    });
    const FILTER: &str = "(?1 IS NULL OR instr(search_text, ?1) > 0
                           OR (?2 IS NOT NULL AND instr(search_phones, ?2) > 0))";
    let total: i64 = connection
        .prepare_cached(&format!("SELECT COUNT(*) FROM contacts WHERE {FILTER}"))?
        .query_row(params![text, digits], |row| row.get(0))?;
    let offset = query
        .page_number
        .saturating_sub(1)
        .saturating_mul(query.page_size);
    let to_sql = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
    let mut contacts = Vec::new();
    {
        let mut statement = connection.prepare_cached(&format!(
            "{CONTACT_SELECT} WHERE {FILTER} ORDER BY create_ms, id LIMIT ?3 OFFSET ?4"
        ))?;
        let mut rows = statement.query(params![
            text,
            digits,
            to_sql(query.page_size),
            to_sql(offset)
        ])?;
        while let Some(row) = rows.next()? {
            contacts.push(contact_from_row(row)?);
        }
    }
    let mut items = Vec::with_capacity(contacts.len());
    for contact in contacts {
        let identifiers = identifiers_of(connection, &contact.id)?;
        items.push(StoredContact {
            identifiers,
            ..contact
        });
    }
    Ok(ContactPage {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}

pub(super) fn delete_contact(
    connection: &Connection,
    contact_id: &str,
) -> Result<bool, StoreError> {
    // Sessions keep their history but no longer point at a contact that is gone: an
    // agent sees them as an unknown visitor's rather than following a dead link.
    connection
        .prepare_cached("UPDATE sessions SET contact_id = NULL WHERE contact_id = ?1")?
        .execute([contact_id])?;
    // The identifiers go with the contact (ON DELETE CASCADE).
    let deleted = connection
        .prepare_cached("DELETE FROM contacts WHERE id = ?1")?
        .execute([contact_id])?;
    Ok(deleted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_columns_hold_names_emails_and_phone_digits() {
        let fields = ContactFields {
            first_name: Some("Ann".into()),
            middle_name: Some("Marie".into()),
            last_name: Some("Lee".into()),
            work_email: Some("Ann@Work.example".into()),
            cell_phone: PhoneNumber::parse_e164("+442079460018"),
            home_phone: PhoneNumber::parse_e164("+12015550123"),
            ..ContactFields::default()
        };
        let (text, phones) = search_columns(&fields);
        assert_eq!(
            text,
            "ann\nmarie\nlee\nann marie lee\nann lee\nann@work.example"
        );
        assert_eq!(phones, "442079460018 12015550123");
    }
}
