//! An encoding is built only when it is first used: counting with one leaves the
//! other unloaded (its own test binary, so that no other test loads either first).

use obleth_tokens::{Encoding, count, heap_bytes, is_loaded, load};

#[test]
fn an_encoding_loads_on_first_use_only() {
    assert!(!is_loaded(Encoding::Cl100kBase) && !is_loaded(Encoding::O200kBase));
    load(Encoding::Cl100kBase);
    assert_eq!(count(Encoding::Cl100kBase, "hello world"), 2);
    assert!(is_loaded(Encoding::Cl100kBase));
    assert!(!is_loaded(Encoding::O200kBase));
    assert_eq!(heap_bytes(Encoding::O200kBase), None);
    assert_eq!(count(Encoding::O200kBase, "hello world"), 2);
    assert!(is_loaded(Encoding::O200kBase));
    assert_eq!(heap_bytes(Encoding::Cl100kBase), Some(512 * 1024));
    assert_eq!(heap_bytes(Encoding::O200kBase), Some(1024 * 1024));
}
