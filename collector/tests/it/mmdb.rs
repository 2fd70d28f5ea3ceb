//! A minimal writer of MaxMind DB files, so that the geolocation tests build their own
//! small database instead of shipping MaxMind's (licensed, 70 MB) files.
//!
//! It follows the MaxMind DB format specification, version 2.0: an IPv6 binary search
//! tree with 24-bit records (IPv4 networks live under `::/96`), a 16-byte separator,
//! the data section, and the metadata map after the `\xAB\xCD\xEFMaxMind.com` marker.
//! Only what the tests need: no overlapping networks, no pointers or data
//! deduplication, and the data types strings, doubles, unsigned integers, booleans,
//! maps and arrays.

use std::net::IpAddr;

/// A value of the data section.
#[derive(Debug, Clone)]
pub enum Value {
    Str(&'static str),
    Double(f64),
    /// Encoded as the smallest of uint16, uint32 and uint64 that holds it.
    Uint(u64),
    /// Always uint32 or uint64, as the metadata's `node_count` and `build_epoch` must be.
    Uint32(u32),
    Uint64(u64),
    Bool(bool),
    Map(Vec<(&'static str, Value)>),
    Array(Vec<Value>),
}

/// A GeoIP2 City record with the fields the collector reads.
#[allow(clippy::too_many_arguments)]
pub fn city_record(
    country_iso: &'static str,
    country_name: &'static str,
    region_iso: &'static str,
    region_name: &'static str,
    city: &'static str,
    postal_code: &'static str,
    latitude: f64,
    longitude: f64,
    time_zone: &'static str,
) -> Value {
    use Value::*;
    let names = |english: &'static str| Map(vec![("en", Str(english)), ("de", Str(english))]);
    Map(vec![
        (
            "city",
            Map(vec![
                ("geoname_id", Uint(2_643_743)),
                ("names", names(city)),
            ]),
        ),
        (
            "country",
            Map(vec![
                ("geoname_id", Uint(2_635_167)),
                ("is_in_european_union", Bool(false)),
                ("iso_code", Str(country_iso)),
                ("names", names(country_name)),
            ]),
        ),
        (
            "location",
            Map(vec![
                ("accuracy_radius", Uint(20)),
                ("latitude", Double(latitude)),
                ("longitude", Double(longitude)),
                ("time_zone", Str(time_zone)),
            ]),
        ),
        ("postal", Map(vec![("code", Str(postal_code))])),
        (
            "subdivisions",
            Array(vec![Map(vec![
                ("iso_code", Str(region_iso)),
                ("names", names(region_name)),
            ])]),
        ),
    ])
}

#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    /// Offset into the data section.
    Data(usize),
}

/// Builds a database of `networks`: `("203.0.113.0", 24, record)`.
pub fn build(database_type: &str, networks: &[(&str, u8, Value)]) -> Vec<u8> {
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty, Record::Empty]];
    let mut data = Vec::new();
    for (address, prefix, value) in networks {
        let offset = data.len();
        encode(&mut data, value);
        let (bits, prefix) = match address.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), u32::from(*prefix) + 96),
            IpAddr::V6(v6) => (u128::from(v6), u32::from(*prefix)),
        };
        let mut node = 0;
        for depth in 0..prefix {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth == prefix - 1 {
                nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(next) => next,
                Record::Empty => {
                    nodes.push([Record::Empty, Record::Empty]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(next);
                    next
                }
                Record::Data(_) => panic!("overlapping networks are not supported"),
            };
        }
    }

    let node_count = nodes.len();
    let mut file = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Empty => node_count,
                Record::Node(index) => index,
                Record::Data(offset) => node_count + 16 + offset,
            };
            assert!(value < 1 << 24, "the tree is too large for 24-bit records");
            file.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    file.extend_from_slice(&[0; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata = Value::Map(vec![
        ("binary_format_major_version", Value::Uint(2)),
        ("binary_format_minor_version", Value::Uint(0)),
        ("build_epoch", Value::Uint64(1_795_500_000)),
        ("database_type", Value::Str(leak(database_type))),
        (
            "description",
            Value::Map(vec![("en", Value::Str("Footpath test database"))]),
        ),
        ("ip_version", Value::Uint(6)),
        (
            "languages",
            Value::Array(vec![Value::Str("en"), Value::Str("de")]),
        ),
        ("node_count", Value::Uint32(node_count as u32)),
        ("record_size", Value::Uint(24)),
    ]);
    encode(&mut file, &metadata);
    file
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// Writes a control byte (and extended type byte) for `type_number` and `size`.
fn control(out: &mut Vec<u8>, type_number: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, Vec::new()),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if type_number <= 7 {
        out.push((type_number << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_number - 7);
    }
    out.extend_from_slice(&extra);
}

/// Unsigned integers are big-endian without leading zero bytes (zero has no bytes).
fn unsigned(out: &mut Vec<u8>, type_number: u8, number: u64) {
    let bytes = number.to_be_bytes();
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    control(out, type_number, significant.len());
    out.extend_from_slice(&significant);
}

fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(text) => {
            control(out, 2, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::Double(number) => {
            control(out, 3, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Uint(number) => {
            // uint16 (5), uint32 (6) or uint64 (9), by magnitude.
            let type_number = match *number {
                0..=0xFFFF => 5,
                0x1_0000..=0xFFFF_FFFF => 6,
                _ => 9,
            };
            unsigned(out, type_number, *number);
        }
        Value::Uint32(number) => unsigned(out, 6, u64::from(*number)),
        Value::Uint64(number) => unsigned(out, 9, *number),
        Value::Bool(flag) => control(out, 14, usize::from(*flag)),
        Value::Map(entries) => {
            control(out, 7, entries.len());
            for (key, value) in entries {
                encode(out, &Value::Str(key));
                encode(out, value);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

/// A small City database: London for 81.2.69.0/24, Sydney for 2001:db8:1::/48.
pub fn test_city_database() -> Vec<u8> {
    build(
        "GeoLite2-City",
        &[
            (
                "81.2.69.0",
                24,
                city_record(
                    "GB",
                    "United Kingdom",
                    "ENG",
                    "England",
                    "London",
                    "EC2V",
                    51.5142,
                    -0.0931,
                    "Europe/London",
                ),
            ),
            (
                "2001:db8:1::",
                48,
                city_record(
                    "AU",
                    "Australia",
                    "NSW",
                    "New South Wales",
                    "Sydney",
                    "2000",
                    -33.8591,
                    151.2002,
                    "Australia/Sydney",
                ),
            ),
        ],
    )
}

/// Writes [`test_city_database`] into `dir` and returns its path.
pub fn write_test_city_database(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("test-city.mmdb");
    std::fs::write(&path, test_city_database()).unwrap();
    path
}
