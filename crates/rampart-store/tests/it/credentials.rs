//! `CredentialStore`: device tokens (and their lookup by hash across tenants), the tenant CA
//! and its CRL numbers under concurrency, device certificates, trusted CAs (unique
//! fingerprints, lookup by subject across tenants) and single-use registration codes.

use rampart_store::{DeviceCertificate, DeviceToken, TenantCa, TrustedCa};

use crate::support::*;

const T: &str = "cr-one";

conformance!(device_tokens_belong_to_an_existing_device, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    create_device(&*store, &device("cr-two", "pump", None)).await;
    store.create_device_token(&token(T, "pump", "t2")).await.expect("t2");
    store.create_device_token(&DeviceToken { created_at: 4_001, ..token(T, "pump", "t1") }).await.expect("t1");
    store.create_device_token(&token(T, "pump", "t0")).await.expect("t0");
    assert_conflict(store.create_device_token(&token(T, "pump", "t1")).await);
    assert_not_found(store.create_device_token(&token(T, "ghost", "t1")).await);
    assert_not_found(store.create_device_token(&token("cr-three", "pump", "t1")).await);
    store.create_device_token(&token("cr-two", "pump", "t1")).await.expect("same id, other tenant");

    let tokens = store.list_device_tokens(T, "pump").await.expect("list");
    let ids: Vec<&str> = tokens.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t0", "t2", "t1"], "by creation time, then id");
    assert_eq!(tokens[0], token(T, "pump", "t0"), "every column round-trips");
    assert!(store.list_device_tokens(T, "ghost").await.expect("none").is_empty());

    assert_not_found(store.delete_device_token("cr-three", "pump", "t1").await);
    assert_not_found(store.delete_device_token(T, "other", "t1").await);
    store.delete_device_token(T, "pump", "t1").await.expect("delete");
    assert_not_found(store.delete_device_token(T, "pump", "t1").await);
    assert_eq!(store.list_device_tokens(T, "pump").await.expect("list").len(), 2);
    assert_eq!(store.list_device_tokens("cr-two", "pump").await.expect("other tenant").len(), 1);
});

conformance!(a_device_token_is_found_by_its_hash_in_any_tenant, |store| {
    for tenant in ["acme", "globex"] {
        create_tenant(&*store, tenant).await;
        create_device(&*store, &device(tenant, "d1", None)).await;
        store.create_device_token(&token(tenant, "d1", &format!("t-{tenant}"))).await.expect("token");
    }
    let found = store.find_device_token_by_hash(&token_hash("globex", "d1", "t-globex")).await.expect("find");
    assert_eq!(found, Some(token("globex", "d1", "t-globex")));
    let found = store.find_device_token_by_hash(&token_hash("acme", "d1", "t-acme")).await.expect("find");
    assert_eq!(found.map(|t| (t.tenant, t.id)), Some(("acme".to_owned(), "t-acme".to_owned())));
    assert_eq!(store.find_device_token_by_hash(b"nobody's").await.expect("find"), None);
    store.delete_device_token("acme", "d1", "t-acme").await.expect("delete");
    assert_eq!(store.find_device_token_by_hash(&token_hash("acme", "d1", "t-acme")).await.expect("find"), None);
});

conformance!(a_tenant_has_one_ca, |store| {
    assert_not_found(store.get_tenant_ca(T).await);
    store.create_tenant_ca(&tenant_ca(T)).await.expect("create");
    assert_conflict(store.create_tenant_ca(&TenantCa { cert_pem: "another".into(), ..tenant_ca(T) }).await);
    assert_eq!(store.get_tenant_ca(T).await.expect("get"), tenant_ca(T));
    assert_not_found(store.get_tenant_ca("cr-two").await);
});

conformance!(crl_numbers_strictly_increase_under_concurrent_calls, |store| {
    store.create_tenant_ca(&tenant_ca(T)).await.expect("ca");
    store.create_tenant_ca(&TenantCa { crl_number: 500, ..tenant_ca("cr-two") }).await.expect("other ca");
    let mut numbers = concurrently(20, |_| {
        let store = store.clone();
        async move { store.next_crl_number(T).await.expect("next") }
    })
    .await;
    numbers.sort_unstable();
    assert_eq!(numbers, (2..22).collect::<Vec<i64>>(), "20 distinct numbers after the stored 1");
    assert_eq!(store.get_tenant_ca(T).await.expect("get").crl_number, 21);
    assert_eq!(store.next_crl_number(T).await.expect("next"), 22);
    assert_eq!(store.get_tenant_ca("cr-two").await.expect("other").crl_number, 500, "per tenant");
    assert_not_found(store.next_crl_number("cr-three").await);
});

conformance!(certificates_are_listed_per_device_and_revoked_ones_for_the_crl, |store| {
    let mut old = certificate(T, "pump", "0a");
    old.revoked_at = Some(50);
    store.create_device_certificate(&old).await.expect("0a");
    store.create_device_certificate(&certificate(T, "pump", "0b")).await.expect("0b");
    store.create_device_certificate(&certificate(T, "fan", "0c")).await.expect("0c");
    assert_conflict(store.create_device_certificate(&certificate(T, "fan", "0b")).await);
    store.create_device_certificate(&certificate("cr-two", "pump", "0b")).await.expect("other tenant");
    assert_eq!(store.get_device_certificate(T, "0a").await.expect("get"), old);
    assert_not_found(store.get_device_certificate("cr-three", "0a").await);
    let serials = |certificates: Vec<DeviceCertificate>| certificates.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    assert_eq!(serials(store.list_device_certificates(T, "pump").await.expect("list")), ["0a", "0b"]);
    assert_eq!(serials(store.list_device_certificates(T, "fan").await.expect("list")), ["0c"]);
    assert_eq!(serials(store.list_revoked_certificates(T).await.expect("crl")), ["0a"]);
    assert!(store.list_revoked_certificates("cr-two").await.expect("crl").is_empty());
});

conformance!(trusted_cas_round_trip_per_tenant, |store| {
    let vendor_b = TrustedCa { auto_register: true, ..trusted_ca(T, "vendor-b", "CN=Vendor CA") };
    let vendor_a = TrustedCa { fingerprint: None, ..trusted_ca(T, "vendor-a", "CN=Vendor CA") };
    store.create_trusted_ca(&vendor_b).await.expect("b");
    store.create_trusted_ca(&vendor_a).await.expect("a, without a fingerprint");
    assert_conflict(store.create_trusted_ca(&trusted_ca(T, "vendor-a", "CN=Other")).await);
    store.create_trusted_ca(&trusted_ca("cr-two", "vendor-a", "CN=Vendor CA")).await.expect("same id, other tenant");
    assert_eq!(store.get_trusted_ca(T, "vendor-b").await.expect("get"), vendor_b);
    assert_not_found(store.get_trusted_ca("cr-three", "vendor-b").await);
    assert_eq!(store.list_trusted_cas(T).await.expect("list"), vec![vendor_a, vendor_b]);

    assert_not_found(store.delete_trusted_ca("cr-three", "vendor-a").await);
    store.delete_trusted_ca(T, "vendor-a").await.expect("delete");
    assert_not_found(store.delete_trusted_ca(T, "vendor-a").await);
    assert_not_found(store.get_trusted_ca(T, "vendor-a").await);
    assert_eq!(store.list_trusted_cas("cr-two").await.expect("other tenant").len(), 1);
});

conformance!(a_trusted_ca_fingerprint_is_unique_across_tenants, |store| {
    let original = trusted_ca(T, "vendor", "CN=Vendor CA");
    store.create_trusted_ca(&original).await.expect("first");
    let copy =
        TrustedCa { fingerprint: original.fingerprint.clone(), ..trusted_ca("cr-two", "vendor", "CN=Vendor CA") };
    assert_conflict(store.create_trusted_ca(&copy).await);
    let same_tenant = TrustedCa { fingerprint: original.fingerprint.clone(), ..trusted_ca(T, "again", "CN=Vendor CA") };
    assert_conflict(store.create_trusted_ca(&same_tenant).await);
    assert!(store.list_trusted_cas("cr-two").await.expect("list").is_empty());
    // CAs from before fingerprints were kept may coexist.
    for (tenant, id) in [(T, "legacy-1"), ("cr-two", "legacy-2")] {
        store
            .create_trusted_ca(&TrustedCa { fingerprint: None, ..trusted_ca(tenant, id, "CN=Old") })
            .await
            .expect("legacy");
    }
    // Once the first is gone, its fingerprint may be trusted again.
    store.delete_trusted_ca(T, "vendor").await.expect("delete");
    store.create_trusted_ca(&copy).await.expect("free again");
});

conformance!(trusted_cas_are_found_by_subject_in_any_tenant, |store| {
    for (tenant, id, subject) in [("globex", "b", "CN=Shared"), ("acme", "a", "CN=Shared"), ("globex", "c", "CN=Other")]
    {
        store.create_trusted_ca(&trusted_ca(tenant, id, subject)).await.expect("trusted CA");
    }
    let shared = store.list_trusted_cas_by_subject("CN=Shared").await.expect("by subject");
    let keys: Vec<(&str, &str)> = shared.iter().map(|ca| (ca.tenant.as_str(), ca.id.as_str())).collect();
    assert_eq!(keys, [("acme", "a"), ("globex", "b")], "ordered by tenant, then id");
    assert_eq!(shared[0], trusted_ca("acme", "a", "CN=Shared"));
    assert!(store.list_trusted_cas_by_subject("CN=shared").await.expect("exact").is_empty(), "exact match only");
});

conformance!(a_registration_code_is_used_up_once, |store| {
    for tenant in [T, "cr-two"] {
        create_tenant(&*store, tenant).await;
    }
    store.create_registration_code(T, "code-1", 10_000, 1_000).await.expect("create");
    assert_conflict(store.create_registration_code(T, "code-1", 10_000, 1_000).await);
    assert!(!store.consume_registration_code("cr-two", "code-1", 2_000).await.expect("other tenant"));
    assert!(!store.consume_registration_code(T, "code-2", 2_000).await.expect("unknown code"));
    let used = concurrently(10, |_| {
        let store = store.clone();
        async move { store.consume_registration_code(T, "code-1", 2_000).await.expect("consume") }
    })
    .await;
    assert_eq!(used.iter().filter(|used| **used).count(), 1, "{used:?}");
    assert!(!store.consume_registration_code(T, "code-1", 2_000).await.expect("again"));
});

conformance!(a_registration_code_expires, |store, raw| {
    create_tenant(&*store, T).await;
    store.create_registration_code(T, "code-1", 10_000, 1_000).await.expect("code-1");
    store.create_registration_code(T, "code-2", 10_000, 1_000).await.expect("code-2");
    assert!(!store.consume_registration_code(T, "code-1", 10_000).await.expect("at expiry"));
    assert!(store.consume_registration_code(T, "code-2", 9_999).await.expect("just before"));
    // Creating a code forgets the expired ones.
    assert_eq!(raw.count("registration_codes WHERE code = 'code-1'").await, 1);
    store.create_registration_code(T, "code-3", 30_000, 20_000).await.expect("code-3");
    assert_eq!(raw.count("registration_codes WHERE code = 'code-1'").await, 0, "expired code purged");
    assert_eq!(raw.count("registration_codes WHERE code = 'code-3'").await, 1);
    assert!(store.create_registration_code("cr-ghost", "code-4", 30_000, 20_000).await.is_err(), "tenant must exist");
});
