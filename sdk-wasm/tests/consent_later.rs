//! A later page after the visitor said no: it stays untracked although the site asks
//! again (`consent: 'pending'`), and what an earlier page left is removed.
#![cfg(target_arch = "wasm32")]

mod consent_support;

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn a_later_page_after_a_denial_stays_untracked() {
    consent_support::untracked_page(
        "document.cookie = '_footpath_consent=denied; Path=/'",
        "pending",
    )
    .await;
}
