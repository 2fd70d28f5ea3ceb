//! A small insertion-ordered map for attributes, traits and campaign parameters.
//!
//! A `BTreeMap` would do, but its code (node handling, sorting on `collect`) is a
//! large share of a wasm module whose size every page pays for; these maps hold at
//! most [`super::MAX_ATTRIBUTES`] entries, where a linear scan is as fast.

/// Keys are unique: inserting an existing key replaces its value in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Map<V>(Vec<(String, V)>);

impl<V> Default for Map<V> {
    fn default() -> Self {
        Map(Vec::new())
    }
}

impl<V> Map<V> {
    pub fn new() -> Self {
        Map(Vec::new())
    }

    pub fn insert(&mut self, key: String, value: V) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Inserts every entry of `other`, newer values replacing older ones.
    pub fn extend(&mut self, other: Map<V>) {
        for (key, value) in other.0 {
            self.insert(key, value);
        }
    }
}

impl<V> FromIterator<(String, V)> for Map<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut map = Map::new();
        for (key, value) in iter {
            map.insert(key, value);
        }
        map
    }
}

impl<V> IntoIterator for Map<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use std::marker::PhantomData;

    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;

    use super::Map;

    impl<V: serde::Serialize> serde::Serialize for Map<V> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (key, value) in &self.0 {
                map.serialize_entry(key, value)?;
            }
            map.end()
        }
    }

    impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Map<V> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapVisitor<V>(PhantomData<V>);
            impl<'de, V: serde::Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
                type Value = Map<V>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map<V>, A::Error> {
                    // `Map::insert` scans for the key, which is quadratic in the number of
                    // keys: fine for the few a valid event has, but an object of many
                    // thousands of keys (limits are checked after parsing) would cost
                    // seconds. Past a few keys, positions are looked up in a hash map.
                    const SCAN_UP_TO: usize = 16;
                    let mut map = Map::new();
                    let mut positions: Option<std::collections::HashMap<String, usize>> = None;
                    while let Some((key, value)) = access.next_entry::<String, V>()? {
                        if map.0.len() < SCAN_UP_TO && positions.is_none() {
                            map.insert(key, value);
                            continue;
                        }
                        let positions = positions.get_or_insert_with(|| {
                            map.0.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect()
                        });
                        match positions.get(&key) {
                            Some(&i) => map.0[i].1 = value,
                            None => {
                                positions.insert(key.clone(), map.0.len());
                                map.0.push((key, value));
                            }
                        }
                    }
                    Ok(map)
                }
            }
            deserializer.deserialize_map(MapVisitor(PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Map;

    #[test]
    fn insert_replaces_in_place_and_keeps_order() {
        let mut map = Map::new();
        map.insert("b".to_owned(), 1);
        map.insert("a".to_owned(), 2);
        map.insert("b".to_owned(), 3);
        assert_eq!(map.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("b", 3), ("a", 2)]);
        assert_eq!(map.get("a"), Some(&2));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn serde_reads_and_writes_an_object_and_the_last_duplicate_wins() {
        let map: Map<i32> = serde_json::from_str(r#"{"x":1,"y":2,"x":3}"#).unwrap();
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"x":3,"y":2}"#);
        assert!(serde_json::from_str::<Map<i32>>("[1]").is_err());
    }

    #[test]
    fn many_keys_keep_order_and_the_last_duplicate_wins() {
        // Past the scanned few, positions come from a hash map: same results.
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{}\":{i},", i % 30));
        }
        text.push_str("\"k0\":-1}");
        let map: Map<i32> = serde_json::from_str(&text).unwrap();
        assert_eq!(map.len(), 30);
        let entries: Vec<(String, i32)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(entries[0], ("k0".to_owned(), -1));
        assert_eq!(entries[1], ("k1".to_owned(), 31));
        assert_eq!(entries[10], ("k10".to_owned(), 10));
        assert_eq!(entries[29], ("k29".to_owned(), 29));
    }
}
