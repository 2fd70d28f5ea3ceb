//! Global Privacy Control is honoured by default: a site that asks for no consent at
//! all still neither stores nor sends anything for a visitor whose browser sends it.
#![cfg(target_arch = "wasm32")]

mod consent_support;

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn global_privacy_control_is_honoured_by_default() {
    consent_support::untracked_page(
        "Object.defineProperty(navigator, 'globalPrivacyControl', { value: true })",
        "",
    )
    .await;
}
