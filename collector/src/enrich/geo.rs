//! The client's IP address → where it is, from a MaxMind-format database file.
//!
//! Any database in the GeoIP2/GeoLite2 **City** layout works (MaxMind's own, or a
//! compatible one such as DB-IP's "City Lite"); a Country database gives countries
//! only. The file is read into memory once at startup; a lookup is a walk down a
//! binary tree, cheap enough to do for each request.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `JourneyGeolocation`, as stored with each event and shown by the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Geolocation {
    /// ISO 3166-1 alpha-2 (`GB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    /// ISO 3166-2 subdivision code without the country (`ENG`), of the largest
    /// subdivision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    /// The city.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// IANA time zone (`Europe/London`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// How the location was found: always `ip` here.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {source}")]
pub struct GeoIpError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

/// An open GeoIP database.
pub struct GeoIpDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIpDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpDatabase")
            .field("database_type", &self.reader.metadata().database_type)
            .field("build_epoch", &self.reader.metadata().build_epoch)
            .finish()
    }
}

impl GeoIpDatabase {
    pub fn open(path: &Path) -> Result<GeoIpDatabase, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(GeoIpDatabase { reader })
    }

    /// The database's type from its metadata (`GeoLite2-City`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Where `address` is; `None` when the database has no record for it or the record
    /// says nothing useful. A damaged record is logged and treated as absent: a
    /// missing location must never cost an event.
    pub fn lookup(&self, address: IpAddr) -> Option<Geolocation> {
        let found = self
            .reader
            .lookup(address.to_canonical())
            .and_then(|result| result.decode::<maxminddb::geoip2::City<'_>>());
        let city = match found {
            Ok(Some(city)) => city,
            Ok(None) => return None,
            Err(error) => {
                // The address is a visitor's: only at debug level.
                tracing::debug!(%address, "GeoIP lookup failed for this address");
                tracing::warn!(%error, "GeoIP lookup failed");
                return None;
            }
        };
        let region = city.subdivisions.first();
        let geolocation = Geolocation {
            country: city.country.iso_code.map(str::to_owned),
            country_name: city.country.names.english.map(str::to_owned),
            region: region.and_then(|region| region.iso_code).map(str::to_owned),
            region_name: region
                .and_then(|region| region.names.english)
                .map(str::to_owned),
            locality: city.city.names.english.map(str::to_owned),
            postal_code: city.postal.code.map(str::to_owned),
            latitude: city.location.latitude,
            longitude: city.location.longitude,
            timezone: city.location.time_zone.map(str::to_owned),
            source: "ip".to_owned(),
        };
        let nothing = Geolocation {
            source: "ip".to_owned(),
            ..Geolocation::default()
        };
        (geolocation != nothing).then_some(geolocation)
    }
}
