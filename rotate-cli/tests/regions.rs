//! KMS keys as SDK users write them, through the real binary against the
//! local KMS server (moto, which serves every region on one endpoint and
//! picks the region from the request's signature): a bare key name, a
//! mistyped alias, keys of two regions in one run, `?region=` and
//! `?profile=` qualifiers, and multi-Region keys.

mod common;

use std::process::{Command, Output};

use common::{Env, endpoint, interop_script, python};

/// boto3 in `region`: prints what the fixture script prints.
fn py(region: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(interop_script("kms_fixtures.py"))
        .args(["--region", region])
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .output()
        .expect("python");
    assert!(out.status.success(), "kms_fixtures.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A name no other test run on this server has used.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

struct Kms {
    env: Env,
}

impl Kms {
    fn new() -> Self {
        let env = Env::with_keys(&[]);
        std::fs::write(env.path("plain.txt"), b"two regions, one envelope\n").expect("write");
        // Empty AWS files of its own: nothing from the machine's ~/.aws.
        for file in ["aws-config", "aws-credentials"] {
            std::fs::write(env.path(file), b"").expect("write");
        }
        Self { env }
    }

    /// `rekey` with the test credentials, in us-east-1 unless `region` says otherwise.
    fn rekey_in(&self, region: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = self.env.cmd(args);
        cmd.env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.env.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.env.path("aws-credentials"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_SESSION_TOKEN");
        match region {
            Some(region) => cmd.env("AWS_REGION", region),
            None => cmd.env_remove("AWS_REGION"),
        };
        cmd.output().expect("run rekey")
    }

    fn rekey(&self, args: &[&str]) -> Output {
        self.rekey_in(Some("us-east-1"), args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.rekey(args);
        assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.rekey(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {stderr}");
        stderr
    }

    /// Encrypts plain.txt to `out` under `keys`.
    fn encrypt(&self, keys: &[&str], out: &str) {
        let mut args = vec!["encrypt".to_owned()];
        for key in keys {
            args.extend(["--key".to_owned(), (*key).to_owned()]);
        }
        args.extend(["plain.txt".to_owned(), "-o".to_owned(), out.to_owned()]);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Decrypts `file` allowing only `key`: the plaintext, or stderr.
    fn decrypt(&self, file: &str, key: &str) -> Result<Vec<u8>, String> {
        let out = self.rekey(&["decrypt", "--key", key, file]);
        if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    fn key_ids(&self, file: &str) -> Vec<String> {
        self.env.key_ids(&self.env.path(file))
    }
}

const PLAIN: &[u8] = b"two regions, one envelope\n";

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn a_bare_key_name_suggests_its_alias() {
    let kms = Kms::new();
    let name = unique("ux-key");
    let key = py("us-east-1", &["create-key"]);
    py("us-east-1", &["create-alias", &format!("alias/{name}"), &key]);
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:{name}"), "plain.txt", "-o", "out.rky"], 5);
    assert_eq!(
        stderr,
        format!(
            "rekey: error: KMS DescribeKey with key {name} failed: the key does not exist \
             (NotFoundException: Invalid keyId {name}); {name} is neither a key id, a key ARN nor an alias name: \
             an alias is written alias/{name}\n  hint: did you mean kms:alias/{name}?\n"
        )
    );
    // The suggestion keeps the qualifier, and works.
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:{name}?region=us-east-1"), "plain.txt"], 5);
    assert!(stderr.ends_with(&format!("  hint: did you mean kms:alias/{name}?region=us-east-1?\n")), "{stderr}");
    kms.encrypt(&[&format!("kms:alias/{name}?region=us-east-1")], "out.rky");
    assert_eq!(kms.key_ids("out.rky"), [key]);
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn a_mistyped_alias_lists_the_aliases_and_the_closest() {
    // A region no other test uses, so the list is exactly this test's aliases.
    const REGION: &str = "ca-central-1";
    let kms = Kms::new();
    let key = py(REGION, &["create-key"]);
    let tag = unique("t");
    let (orders, billing) = (format!("orders-{tag}"), format!("billing-{tag}"));
    for name in [&orders, &billing] {
        py(REGION, &["create-alias", &format!("alias/{name}"), &key]);
    }
    let typo = format!("ordres-{tag}");
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:alias/{typo}?region={REGION}"), "plain.txt"], 5);
    let mut listed = [format!("alias/{billing}"), format!("alias/{orders}")];
    listed.sort();
    assert_eq!(
        stderr,
        format!(
            "rekey: error: KMS DescribeKey with key alias/{typo}?region={REGION} failed: the key does not exist \
             (NotFoundException: Alias arn:aws:kms:{REGION}:123456789012:alias/{typo} is not found.); \
             the aliases in {REGION} are {}\n  hint: did you mean kms:alias/{orders}?region={REGION}?\n",
            listed.join(", ")
        )
    );
    // Nothing close: the list, and how to look in another region.
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:alias/zzzzzzzzzzzz?region={REGION}"), "plain.txt"], 5);
    assert!(stderr.contains(&format!("the aliases in {REGION} are {}\n", listed.join(", "))), "{stderr}");
    assert!(
        stderr.ends_with(
            "  hint: keys and aliases are per region and account: add ?region=REGION or ?profile=NAME to the key \
             reference (kms:alias/NAME?region=eu-west-1), or use the key's ARN\n"
        ),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn keys_of_two_regions_in_one_run() {
    let kms = Kms::new();
    let east = py("us-east-1", &["create-key"]);
    let west = py("eu-west-1", &["create-key"]);
    assert!(west.contains(":eu-west-1:"), "{west}");
    let (k_east, k_west) = (format!("kms:{east}"), format!("kms:{west}"));

    kms.encrypt(&[&k_east, &k_west], "both.rky");
    assert_eq!(kms.key_ids("both.rky"), [east.clone(), west.clone()]);
    // Each key alone decrypts: the eu-west-1 Decrypt goes to eu-west-1.
    assert_eq!(kms.decrypt("both.rky", &k_west).expect("west alone"), PLAIN);
    assert_eq!(kms.decrypt("both.rky", &k_east).expect("east alone"), PLAIN);

    // A rotation across regions: ReEncrypt cannot, Decrypt then Encrypt does.
    kms.encrypt(&[&k_east], "moved.rky");
    let out = kms.ok(&["rewrap", "--to", &k_west, "--from", &k_east, "--json", "moved.rky"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["rewrapped"], 1, "{summary}");
    assert_eq!(summary["kms"]["calls"]["Decrypt"], 1, "{summary}");
    assert_eq!(summary["kms"]["calls"]["Encrypt"], 1, "{summary}");
    assert_eq!(kms.key_ids("moved.rky"), [west.as_str()]);
    assert_eq!(kms.decrypt("moved.rky", &k_west).expect("moved"), PLAIN);
    assert!(kms.decrypt("moved.rky", &k_east).is_err(), "the old key no longer decrypts it");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn aliases_and_ids_take_region_and_profile_qualifiers() {
    let kms = Kms::new();
    let west = py("eu-west-1", &["create-key"]);
    let alias = format!("alias/{}", unique("eu-app"));
    py("eu-west-1", &["create-alias", &alias, &west]);
    let id = west.rsplit_once("key/").expect("key ARN").1.to_owned();

    kms.encrypt(&[&format!("kms:{alias}?region=eu-west-1")], "by-alias.rky");
    kms.encrypt(&[&format!("kms:{id}?region=eu-west-1")], "by-id.rky");
    for file in ["by-alias.rky", "by-id.rky"] {
        assert_eq!(kms.key_ids(file), [west.as_str()], "{file}");
        assert_eq!(kms.decrypt(file, &format!("kms:{alias}?region=eu-west-1")).expect(file), PLAIN);
    }

    // A profile's region, with no region in the environment.
    std::fs::write(
        kms.env.path("aws-config"),
        "[default]\nregion = us-east-1\n\n[profile europe]\nregion = eu-west-1\n",
    )
    .expect("config");
    let out = kms.rekey_in(
        None,
        &["encrypt", "--key", &format!("kms:{alias}?profile=europe"), "plain.txt", "-o", "by-profile.rky"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(kms.key_ids("by-profile.rky"), [west.as_str()]);
    // Without the qualifier the alias is looked for in the default region.
    let out = kms.rekey_in(None, &["encrypt", "--key", &format!("kms:{alias}"), "plain.txt"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "rekey: error: KMS DescribeKey with key {alias} failed: the key does not exist (NotFoundException: \
             Alias arn:aws:kms:us-east-1:123456789012:{alias} is not found.); the aliases in us-east-1 are "
        )),
        "{stderr}"
    );

    // Malformed qualifiers are usage errors naming the problem.
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:{alias}?zone=a"), "plain.txt"], 2);
    assert_eq!(
        stderr,
        format!(
            "rekey: error: KMS key reference with key {alias}?zone=a failed: unknown qualifier \"zone\": \
             only region=REGION and profile=NAME are accepted\n"
        )
    );
    let stderr = kms.fails(&["encrypt", "--key", &format!("kms:{west}?region=us-east-1"), "plain.txt"], 2);
    assert!(stderr.contains("the ARN is in eu-west-1 but the qualifier says region=us-east-1"), "{stderr}");
}

#[test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
fn multi_region_keys_work_in_the_replica_region() {
    let kms = Kms::new();
    let primary = py("us-east-1", &["create-key", "--multi-region"]);
    assert!(primary.contains(":key/mrk-"), "{primary}");
    let replica = py("us-east-1", &["replicate-key", &primary, "eu-west-1"]);
    assert_eq!(replica, primary.replace(":us-east-1:", ":eu-west-1:"));

    // Encrypting under the replica's ARN goes to eu-west-1, which answers
    // with the replica's ARN (us-east-1 would answer with the primary's).
    kms.encrypt(&[&format!("kms:{replica}")], "replica.rky");
    assert_eq!(kms.key_ids("replica.rky"), [replica.as_str()]);
    // Its id alone, qualified, names the same replica.
    let id = replica.rsplit_once("key/").expect("key ARN").1.to_owned();
    kms.encrypt(&[&format!("kms:{id}?region=eu-west-1")], "by-id.rky");
    assert_eq!(kms.key_ids("by-id.rky"), [replica.as_str()]);
    kms.encrypt(&[&format!("kms:{primary}"), &format!("kms:{replica}")], "both.rky");
    assert_eq!(kms.key_ids("both.rky"), [primary, replica]);
    // moto cannot decrypt what a multi-Region key wrapped (it stores key
    // ids in 36 bytes; mrk- ids are 40), so which region a Decrypt goes to
    // is tested against a scripted KMS in kms-adapter/tests/regions.rs.
}
