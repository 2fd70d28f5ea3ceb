//! Reading the page's `ac(...)` arguments as `host.js` flattened them into core
//! [`Val`]s; the checking is `core::args`.

use super::browser::Browser;
use super::{fp_kind, fp_number, fp_result, fp_text};
use crate::core::{Args, Func, Val};

/// The text of flattened argument `at` (see `fp_result` for why in two calls).
fn text(at: u32) -> String {
    fp_text(at as i32);
    fp_result().unwrap_or_default()
}

fn read(index: &mut u32) -> Val<Browser> {
    let at = *index;
    let kind = fp_kind(at as i32);
    *index += 1;
    let count = kind >> 4;
    match kind & 15 {
        0 => Val::Undefined,
        1 => Val::Null,
        2 | 3 => Val::Bool(kind == 3),
        4 => Val::Number(fp_number(at as i32), text(at)),
        5 => Val::Str(text(at)),
        6 => Val::Func(Func::new(count)),
        7 => Val::List(text(at), count),
        8 => {
            let mut entries = Vec::new();
            for _ in 0..count {
                let key = text(*index);
                *index += 1;
                entries.push((key, read(index)));
            }
            Val::Object(entries)
        }
        _ => Val::Other,
    }
}

/// Reads the `count` flattened entries `fp_args` left.
pub fn read_args(count: u32) -> Args<Browser> {
    let mut list = Vec::new();
    let mut index = 0;
    while index < count {
        list.push(read(&mut index));
    }
    Args::new(list)
}
