use proptest::prelude::*;

use super::*;

fn pod(user: &str, server: &str) -> String {
    object_name(&expand("jupyter-{user_server}", &Names::new(user, server), None).unwrap())
}

#[test]
fn brief_vectors() {
    assert_eq!(
        safe_slug("user@email.com", None),
        "user-email-com---0925f997"
    );
    assert_eq!(safe_slug("jupyter-Alex", None), "jupyter-alex---3a1c285c");
    assert_eq!(
        pod("some_user", "test-server!"),
        "jupyter-some-user---7d3a4d4e--test-server---cb54a9af"
    );
    assert_eq!(pod("user-has-dash", ""), "jupyter-user-has-dash");
    assert_eq!(pod("user-has", "dash"), "jupyter-user-has--dash");
}

/// Expected values computed with KubeSpawner 7's `slugs.py`.
#[test]
fn kubespawner_vectors() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (user, server, user slug, server slug, user_server)
        ("../../etc", "", "etc---74ccf3c5", "", "etc---74ccf3c5"),
        ("a\nb", "", "a-b---7e18f737", "", "a-b---7e18f737"),
        (
            "Ünïcødé用户",
            "",
            "n-c-d---600ee3cd",
            "",
            "n-c-d---600ee3cd",
        ),
        ("", "", "x---e3b0c442", "", "x---e3b0c442"),
        (
            "123abc",
            "",
            "x-123abc---dd130a84",
            "",
            "x-123abc---dd130a84",
        ),
        ("--", "", "x---d8156bae", "", "x---d8156bae"),
        ("a--b", "", "a-b---90827a2e", "", "a-b---90827a2e"),
        (
            "alice",
            &"a".repeat(60),
            "alice",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa---11ee3912",
            "alice--aaaaaaaaaaaaaaaaa---dc3528e0",
        ),
        (
            "e0a8f1d7-5f7e-4b8a-9a2e-2c3d@egi.eu",
            "my server",
            "e0a8f1d7-5f7e-4b8a-9a2e-2c3d-egi-eu---0d9ad1aa",
            "my-server---b129874b",
            "e0a8f1d7-5f7e-4b8--my-server---5254dd60",
        ),
    ];
    for (user, server, u, s, us) in cases {
        let names = Names::new(user, server);
        assert_eq!(
            (&*names.user, &*names.server, &*names.user_server),
            (*u, *s, *us)
        );
    }
    let long = Names::new(&"x".repeat(300), "");
    assert_eq!(
        long.user,
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx---0d4e2ca9"
    );
    assert_eq!(long.user_server, "xxxxxxxxxxxxxxxxx--x---c773547f");
    let digits = Names::new(&"1".repeat(60), "");
    assert_eq!(
        digits.user,
        "x-11111111111111111111111111111111111---70d36ded"
    );
    assert_eq!(
        safe_slug(&format!("1-{}", "a".repeat(60)), Some(20)),
        "x-1-aaaaa---c1690649"
    );
    assert_eq!(multi_slug(&["a"], 48), "a---ca978112");
    assert_eq!(multi_slug(&["", "x"], 48), "x--x---e3406493");
}

#[test]
fn labels_and_escape() {
    assert_eq!(safe_label("jupyter-Alex"), "jupyter-Alex");
    assert_eq!(safe_label("some_user"), "some_user");
    assert_eq!(safe_label(""), "");
    assert_eq!(safe_label("user@email.com"), "user-email-com---0925f997");
    assert_eq!(
        safe_label("e0a8f1d7-5f7e-4b8a-9a2e-2c3d@egi.eu"),
        "e0a8f1d7-5f7e-4b8a-9a---0d9ad1aa"
    );
    assert_eq!(Names::new("Bob", "").server_label, "");
    assert_eq!(escape_slug("jupyter-Alex"), "jupyter-2d-41lex");
    assert_eq!(escape_slug("a\nb"), "a-ab");
    assert_eq!(escape_slug("用"), "-e7-94-a8");
}

#[test]
fn template_fields() {
    let names = Names::new("Alice@x", "gpu");
    let ctx = TemplateContext {
        user_id: Some(42),
        hub_namespace: Some("default"),
    };
    let t = "{username}|{servername}|{user_server}|{unescaped_username}|{unescaped_servername}|{userid}|{hubnamespace}|{{x}}";
    assert_eq!(
        expand_with(t, &names, &ctx).unwrap(),
        "alice-x---5482d92b|gpu|alice-x---5482d92b--gpu|Alice@x|gpu|42|user|{x}"
    );
    // trailing '-' added by an empty field is stripped, one in the template is kept
    let default = Names::new("bob", "");
    assert_eq!(
        expand("claim-{username}--{servername}", &default, None).unwrap(),
        "claim-bob"
    );
    assert_eq!(expand("x-{servername}-", &default, None).unwrap(), "x--");
}

#[test]
fn template_errors() {
    let names = Names::new("bob", "");
    let err = expand("jupyter-{user}", &names, None).unwrap_err();
    assert!(err.to_string().contains("{user}"), "{err}");
    assert!(expand("a{username", &names, None).is_err());
    assert!(expand("a}b", &names, None).is_err());
    let err = expand("u-{userid}", &names, None).unwrap_err();
    assert!(err.to_string().contains("user id"), "{err}");
}

#[test]
fn object_names_are_made_valid() {
    assert_eq!(object_name("jupyter-bob"), "jupyter-bob");
    let name = object_name("Jupyter-Bob@Example");
    assert!(is_valid_object_name(&name), "{name}");
    assert_eq!(name, "jupyter-bob-example---a7674536");
    let long = object_name(&"a".repeat(100));
    assert_eq!(long.len(), 63);
    // `--` from the template itself is fine in a final name
    assert_eq!(object_name("jupyter-a--b"), "jupyter-a--b");
}

#[test]
fn slugify_display_names() {
    // Each expected value is what python-slugify 8 (KubeSpawner's) returns.
    for (display, slug) in [
        ("Small (2 CPUs, 1,000 MB)", "small-2-cpus-1000-mb"),
        ("  GPU: Tesla's  ", "gpu-tesla-s"),
        ("!!!", ""),
        ("Análisis de datos", "analisis-de-datos"),
        ("Bob's profile", "bob-s-profile"),
        ("a\"b", "a-b"),
        ("R&amp;D", "r-d"),
        ("Crème brûlée &eacute; 2", "creme-brulee-e-2"),
        ("Ünïcödé — ГПУ", "unicode-gpu"),
        ("中文 配置", "zhong-wen-pei-zhi"),
        ("x--y", "x-y"),
        ("1,000,000", "1000000"),
        ("A &#233; &#x41;", "a-e-a"),
    ] {
        assert_eq!(slugify(display), slug, "{display:?}");
    }
}

#[test]
fn hostile_usernames_give_valid_names() {
    for user in [
        "../../etc",
        "a\nb",
        &"z".repeat(300),
        "ユーザー",
        "",
        "-",
        "0",
        "a/b\\c",
    ] {
        for server in ["", "x", "../..", "\u{0}"] {
            let names = Names::new(user, server);
            for name in [&names.user, &names.user_server, &pod(user, server)] {
                assert!(is_valid_object_name(name), "{user:?}/{server:?}: {name}");
            }
            assert!(is_valid_label(&names.user_label));
            assert!(is_valid_label(&names.server_label));
        }
    }
}

proptest! {
    #[test]
    fn any_input_gives_a_valid_deterministic_name(user in ".{0,80}", server in ".{0,80}") {
        let names = Names::new(&user, &server);
        prop_assert!(is_valid_object_name(&names.user));
        prop_assert!(names.user.len() <= SLUG_MAX_LENGTH);
        prop_assert!(names.user_server.len() <= SLUG_MAX_LENGTH);
        prop_assert!(is_valid_object_name(&names.user_server));
        prop_assert!(is_valid_label(&names.user_label));
        prop_assert!(is_valid_label(&names.server_label));
        if !server.is_empty() {
            prop_assert!(is_valid_object_name(&names.server));
        }
        prop_assert_eq!(&names, &Names::new(&user, &server));
        let p = pod(&user, &server);
        prop_assert!(is_valid_object_name(&p) && p.len() <= MAX_NAME_LENGTH);
    }

    #[test]
    fn distinct_inputs_give_distinct_names(a in "[a-zA-Z0-9@._-]{0,70}", b in "[a-zA-Z0-9@._-]{0,70}") {
        prop_assume!(a != b);
        prop_assert_ne!(safe_slug(&a, None), safe_slug(&b, None));
        prop_assert_ne!(Names::new(&a, "").user_server, Names::new(&b, "").user_server);
        prop_assert_ne!(Names::new("u", &a).user_server, Names::new("u", &b).user_server);
        prop_assert_ne!(safe_label(&a), safe_label(&b));
    }

    #[test]
    fn any_object_name_input_is_valid(s in ".{0,200}") {
        let name = object_name(&s);
        prop_assert!(is_valid_object_name(&name));
    }
}
