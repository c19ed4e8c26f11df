//! The Kineto importer's JSON splitter must turn any bytes into values or a
//! clear error, whatever sizes the reads come in; and on valid JSON it must
//! hand over exactly the values `serde_json` sees.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use strand_offline::kineto::json_split::Splitter;

/// Returns at most `n` bytes a read: values cross read boundaries.
struct Reads<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Reads<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let k = self.n.min(out.len()).min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the read size (0: all at once).
    let Some((&n, data)) = input.split_first() else { return };
    let n = if n == 0 { usize::MAX } else { n as usize };
    let mut values: Vec<(String, Vec<u8>)> = Vec::new();
    let mut elements: Vec<Vec<u8>> = Vec::new();
    let split = Splitter::new(Reads { data, n }).with_max_value(1 << 20).run::<()>(
        "traceEvents",
        |k, v, _| {
            values.push((k.to_string(), v.to_vec()));
            Ok(())
        },
        |_, v, _| {
            elements.push(v.to_vec());
            Ok(())
        },
    );
    // Differential: on a JSON object without repeated keys the splitter
    // hands over exactly the values serde_json reads.
    let Ok(Value::Object(whole)) = serde_json::from_slice::<Value>(data) else { return };
    if data.len() > 1 << 20 {
        return;
    }
    let found = split.unwrap_or_else(|e| panic!("valid JSON refused by the splitter: {e:?}"));
    let Ok(TopKeys(keys)) = serde_json::from_slice::<TopKeys>(data) else { return };
    if keys != whole.len() {
        return;
    }
    let events = whole.get("traceEvents").filter(|e| e.is_array());
    assert_eq!(found, events.is_some(), "traceEvents found");
    assert_eq!(values.len() + usize::from(found), whole.len(), "top-level values");
    for (k, v) in &values {
        let v: Value = serde_json::from_slice(v).unwrap_or_else(|e| panic!("value of {k:?} cut wrong: {e}"));
        assert_eq!(Some(&v), whole.get(k), "value of {k:?}");
    }
    if let Some(Value::Array(events)) = events {
        assert_eq!(elements.len(), events.len(), "element count");
        for (e, want) in elements.iter().zip(events) {
            let e: Value = serde_json::from_slice(e).unwrap_or_else(|err| panic!("element cut wrong: {err}"));
            assert_eq!(&e, want);
        }
    }
});

/// The number of keys of a top-level object, repeated keys counted each time.
struct TopKeys(usize);

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut n = 0;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(TopKeys(n))
            }
        }
        d.deserialize_map(V)
    }
}
