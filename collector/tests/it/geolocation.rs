//! Geolocation from a MaxMind-format database that the test builds itself
//! (see `mmdb.rs`).

use footpath_collector::config::Config;
use footpath_collector::enrich::geo::{GeoIpDatabase, Geolocation};
use serde_json::json;

use crate::mmdb::{build, write_test_city_database};
use crate::support::*;

fn london() -> Geolocation {
    Geolocation {
        country: Some("GB".into()),
        country_name: Some("United Kingdom".into()),
        region: Some("ENG".into()),
        region_name: Some("England".into()),
        locality: Some("London".into()),
        postal_code: Some("EC2V".into()),
        latitude: Some(51.5142),
        longitude: Some(-0.0931),
        timezone: Some("Europe/London".into()),
        source: "ip".into(),
    }
}

#[test]
fn lookups_in_the_test_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = GeoIpDatabase::open(&write_test_city_database(dir.path())).unwrap();
    assert_eq!(database.database_type(), "GeoLite2-City");
    let sydney = Geolocation {
        country: Some("AU".into()),
        country_name: Some("Australia".into()),
        region: Some("NSW".into()),
        region_name: Some("New South Wales".into()),
        locality: Some("Sydney".into()),
        postal_code: Some("2000".into()),
        latitude: Some(-33.8591),
        longitude: Some(151.2002),
        timezone: Some("Australia/Sydney".into()),
        source: "ip".into(),
    };
    let table: &[(&str, Option<&Geolocation>)] = &[
        ("81.2.69.142", Some(&london())),
        ("81.2.69.0", Some(&london())),
        ("81.2.69.255", Some(&london())),
        // A dual-stack socket's form of the same address.
        ("::ffff:81.2.69.142", Some(&london())),
        ("81.2.70.1", None),
        ("203.0.113.7", None),
        ("2001:db8:1:42::7", Some(&sydney)),
        ("2001:db8:2::1", None),
    ];
    for (address, expected) in table {
        let found = database.lookup(address.parse().unwrap());
        assert_eq!(found.as_ref(), *expected, "{address}");
    }
}

#[test]
fn a_record_without_location_fields_gives_no_geolocation() {
    use crate::mmdb::Value::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anonymous.mmdb");
    let bytes = build(
        "GeoLite2-City",
        &[(
            "192.0.2.0",
            24,
            Map(vec![("traits", Map(vec![("is_anycast", Bool(true))]))]),
        )],
    );
    std::fs::write(&path, bytes).unwrap();
    let database = GeoIpDatabase::open(&path).unwrap();
    assert_eq!(database.lookup("192.0.2.1".parse().unwrap()), None);
}

#[test]
fn an_unreadable_database_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.mmdb");
    std::fs::write(&path, b"not a database").unwrap();
    let result = footpath_collector::AppState::new(
        Config {
            geoip_database_path: Some(path),
            ..test_config(dir.path())
        },
        std::sync::Arc::new(footpath_collector::clock::ManualClock::new(T0)),
    );
    let error = result
        .err()
        .expect("a broken GeoIP file must stop the collector");
    assert!(
        error
            .to_string()
            .starts_with("cannot open the GeoIP database"),
        "{error}"
    );
}

/// The client at 81.2.69.142 (London) sends a batch; the session and the event carry
/// the location.
#[tokio::test]
async fn sessions_and_events_carry_the_geolocation() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_test_city_database(dir.path());
    let app = TestApp::with_config(|config| config.geoip_database_path = Some(path));
    let request = batch_request_from(
        "81.2.69.142",
        &[],
        batch(VISITOR, T0, vec![pageview(1, T0, "https://shop.example/")]),
    );
    app.send(request).await.ok_json();
    let session = app.only_session_of(VISITOR).await;
    let expected = json!({
        "country": "GB",
        "countryName": "United Kingdom",
        "region": "ENG",
        "regionName": "England",
        "locality": "London",
        "postalCode": "EC2V",
        "latitude": 51.5142,
        "longitude": -0.0931,
        "timezone": "Europe/London",
        "source": "ip"
    });
    assert_eq!(session["geolocation"], expected, "{session:#}");
    let events = app.events_of(session["id"].as_str().unwrap()).await;
    assert_eq!(events[0]["webEvent"]["geolocation"], expected);

    // An address the database does not know: no geolocation at all.
    let request = batch_request_from(
        "203.0.113.7",
        &[],
        batch(
            OTHER_VISITOR,
            T0,
            vec![pageview(2, T0, "https://shop.example/")],
        ),
    );
    app.send(request).await.ok_json();
    let session = app.only_session_of(OTHER_VISITOR).await;
    assert_eq!(session.get("geolocation"), None, "{session:#}");
}
