//! Every Redis key name and cluster slot tag of the store, in one place and only here.
//!
//! Key layout (prefix `tp` by default); every key of a user carries the hash tag `{user id}`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tp:{u}:p` | hash | `v` version, `stage`, `since`, aggregates (`fs` `ls` `lp` `mon` `pc`, `c:<event type>` counts, `d:<event type>` day buckets `day:count:value,...` and `t:<event type>` latest time for configured features), `a:<name>` attributes as JSON |
//! | `tp:{u}:j` | list | stage transitions, JSON, oldest first |
//! | `tp:{u}:e` | sorted set | event ids already applied, scored by store time (de-duplication) |
//! | `tp:{u}:r` | sorted set | recent decisions (links outcomes to decisions): every score 0, members `decision-id|,offer,offer,|~stage~channel~segments|outcomes` in id (= time) order |
//! | `tp:{u}:d`, `tp:{u}:di` | hash, sorted set | the recent decisions before issue 9 (id -> offers; ids by time): read by outcomes, erased, no longer written |
//! | `tp:{u}:c` | sorted set | contacts `decision|channel|offer` by time (caps, contact limits) |
//! | `tp:{u}:o` | hash | `dismiss:<offer>` / `accept:<offer>` -> last time (cooldowns) |
//! | `tp:{u}:x` | hash | experiment -> `variant|first exposure`; `<exp>:v`, `<exp>:c` flags, `<exp>:r` revenue |
//! | `tp:{u}:k` | string | the user's log-sealing key `kid:key-hex` (crypto-shredding; erased with the user) |
//! | `tp:kr` / `tp:kr:{tag}` | hash | keyring of the log shard: `kid -> key-hex` (an erasure deletes the user's field) |
//! | `tp:xc` / `tp:xc:{tag}` | hash | experiment counters `exp|variant|metric` (sharded by slot like the logs) |
//! | `tp:kd:<day>` / `tp:kd:<day>:{tag}` | hash | funnel and offer counters of a UTC day (`domain::funnel` names them; expire `counter_retention_days` after the day) |
//! | `tp:kn` / `tp:kn:{tag}` | hash | users in each stage now (`s|stage`) |
//! | `tp:jlog` / `tp:jlog:{tag}` | stream | journey log: one entry per applied event (`kid`, sealed `enc`) |
//! | `tp:{model:<name>}:v` | hash | model registry: version -> artifact JSON |
//! | `tp:{model:<name>}:current` | string | the version in use |
//! | `tp:{model:<name>}:history` | list | earlier `current` versions, for rollback |
//! | `tp:dlog` / `tp:dlog:{tag}` | stream | decision log: decisions (`kind`, `id`, `kid`, `bin`: the sealed binary record, `logrec.rs`) and outcomes (`kid`, sealed JSON in `enc`) |
//!
//! On a single node the logs are one stream each. On a cluster, a Lua script may only touch
//! keys of one slot, so the logs are sharded by slot: `{tag}` is a short string chosen to hash
//! to the same slot as the user, which keeps "apply the event and log it" one atomic script.
use std::sync::OnceLock;

/// Key names, in one place.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

/// The shared logs and counters, sharded by slot on a cluster.
const JOURNEY_LOG: &str = "jlog";
const DECISION_LOG: &str = "dlog";
const EXPERIMENT_COUNTERS: &str = "xc";
const KEYRING: &str = "kr";
const LOG_DICTS: &str = "ldict";
const COUNTERS_NOW: &str = "kn";

/// The name of a day's counter hash (before the slot tag).
fn counters_of_day(day: i64) -> String {
    format!("kd:{day}")
}

impl Keys {
    /// Keys under `prefix`; `cluster` shards the shared logs by slot.
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self { prefix: prefix.to_string(), cluster }
    }

    /// Whether the shared logs are sharded by slot (Redis Cluster).
    pub fn cluster(&self) -> bool {
        self.cluster
    }

    /// `prefix:{tag}:suffix`. The tag is the user id itself, unless that id could end the
    /// hash tag early or look like an encoded one (braces, a leading `#`): then it is `#` and
    /// the id in hex, so every key of a user always shares one non-empty tag.
    fn user(&self, user: &str, suffix: &str) -> String {
        if user.contains(['{', '}']) || user.starts_with('#') {
            format!("{}:{{#{}}}:{suffix}", self.prefix, hex::encode(user))
        } else {
            format!("{}:{{{user}}}:{suffix}", self.prefix)
        }
    }
    /// The user's profile hash (version, stage, aggregates, attributes).
    pub fn profile(&self, user: &str) -> String {
        self.user(user, "p")
    }
    /// The user's stage history list.
    pub fn journey(&self, user: &str) -> String {
        self.user(user, "j")
    }
    /// The user's applied event ids (de-duplication).
    pub fn dedup(&self, user: &str) -> String {
        self.user(user, "e")
    }
    /// The user's recent decisions: a sorted set with every score 0 whose members are
    /// `decision-id|,offers,|outcomes|`; UUID v7 ids sort by time, so the set's order is the
    /// decisions' and trimming to the newest is one `ZREMRANGEBYRANK`.
    pub fn decisions(&self, user: &str) -> String {
        self.user(user, "r")
    }
    /// Before issue 9: the recent decisions as a hash (decision id -> offers and outcomes)...
    pub fn legacy_decisions(&self, user: &str) -> String {
        self.user(user, "d")
    }
    /// ... and their ids by time. Still read by outcomes (decisions made before the upgrade
    /// link until these keys expire) and erased with the user; no longer written.
    pub fn legacy_decision_index(&self, user: &str) -> String {
        self.user(user, "di")
    }
    /// The user's contacts by time.
    pub fn contacts(&self, user: &str) -> String {
        self.user(user, "c")
    }
    /// The user's dismiss/accept marks.
    pub fn marks(&self, user: &str) -> String {
        self.user(user, "o")
    }
    /// The user's experiment exposures.
    pub fn exposures(&self, user: &str) -> String {
        self.user(user, "x")
    }
    /// The experiment-counter hash in the user's slot.
    pub fn experiment_counters(&self, user: &str) -> String {
        self.log(EXPERIMENT_COUNTERS, user)
    }
    /// The funnel and offer counters of `day` in the user's slot.
    pub fn day_counters(&self, user: &str, day: i64) -> String {
        self.log(&counters_of_day(day), user)
    }
    /// The in-stage-now counters in the user's slot.
    pub fn stage_counters(&self, user: &str) -> String {
        self.log(COUNTERS_NOW, user)
    }
    /// The user's log-sealing key (`kid:key-hex`).
    pub fn user_key(&self, user: &str) -> String {
        self.user(user, "k")
    }
    /// The keyring hash (`kid -> key-hex`) of the log shards in the user's slot.
    pub fn keyring(&self, user: &str) -> String {
        self.log(KEYRING, user)
    }
    /// The decision records' dictionaries (`logrec::Dict`, id -> bytes) of the log shard in
    /// the user's slot.
    pub fn log_dicts(&self, user: &str) -> String {
        self.log(LOG_DICTS, user)
    }
    /// The dictionary hash of the shard whose keyring is `keyring` (a `*_log_shards` key).
    pub fn log_dicts_beside(&self, keyring: &str) -> String {
        let base = format!("{}:{KEYRING}", self.prefix);
        let tag = keyring.strip_prefix(&base).unwrap_or_default();
        format!("{}:{LOG_DICTS}{tag}", self.prefix)
    }
    /// Every per-user key (what `DeleteProfile` erases; the user's keyring field goes too).
    pub fn all_of_user(&self, user: &str) -> [String; 10] {
        [
            self.profile(user),
            self.journey(user),
            self.dedup(user),
            self.decisions(user),
            self.legacy_decisions(user),
            self.legacy_decision_index(user),
            self.contacts(user),
            self.marks(user),
            self.exposures(user),
            self.user_key(user),
        ]
    }
    fn model(&self, name: &str, suffix: &str) -> String {
        format!("{}:{{model:{name}}}:{suffix}", self.prefix)
    }
    /// A model's artifacts by version.
    pub fn model_versions(&self, name: &str) -> String {
        self.model(name, "v")
    }
    /// A model's `current` pointer.
    pub fn model_current(&self, name: &str) -> String {
        self.model(name, "current")
    }
    /// A model's earlier `current` versions, for rollback.
    pub fn model_history(&self, name: &str) -> String {
        self.model(name, "history")
    }
    fn log(&self, name: &str, user: &str) -> String {
        if self.cluster {
            format!("{}:{name}:{{{}}}", self.prefix, slot_tag(slot_of_key(&self.profile(user))))
        } else {
            format!("{}:{name}", self.prefix)
        }
    }
    /// The journey-log stream (shard) the user's events go to.
    pub fn journey_log(&self, user: &str) -> String {
        self.log(JOURNEY_LOG, user)
    }
    /// The decision-log stream (shard) the user's decisions and outcomes go to.
    pub fn decision_log(&self, user: &str) -> String {
        self.log(DECISION_LOG, user)
    }
    /// Every stream shard of a log.
    fn shards(&self, name: &str) -> Vec<String> {
        if self.cluster {
            (0..SLOTS).map(|s| format!("{}:{name}:{{{}}}", self.prefix, slot_tag(s))).collect()
        } else {
            vec![format!("{}:{name}", self.prefix)]
        }
    }
    /// Every shard of the journey log, with the keyring of its slot.
    pub fn journey_log_shards(&self) -> Vec<(String, String)> {
        self.shards(JOURNEY_LOG).into_iter().zip(self.shards(KEYRING)).collect()
    }
    /// Every shard of the decision log, with the keyring of its slot.
    pub fn decision_log_shards(&self) -> Vec<(String, String)> {
        self.shards(DECISION_LOG).into_iter().zip(self.shards(KEYRING)).collect()
    }
    /// Per shard (slot): the in-stage-now counters, then the counters of each day of
    /// `from..=to` (all in one slot, so one pipeline reads a shard).
    pub fn counter_shards(&self, from: i64, to: i64) -> Vec<Vec<String>> {
        let mut names = vec![COUNTERS_NOW.to_string()];
        names.extend((from..=to).map(counters_of_day));
        let per_name: Vec<Vec<String>> = names.iter().map(|n| self.shards(n)).collect();
        (0..per_name[0].len()).map(|i| per_name.iter().map(|keys| keys[i].clone()).collect()).collect()
    }
    /// Every shard of the experiment counters.
    pub fn experiment_counter_shards(&self) -> Vec<String> {
        self.shards(EXPERIMENT_COUNTERS)
    }
}

const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster uses for key slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The cluster slot of a key, honouring `{hash tags}`.
pub fn slot_of_key(key: &str) -> u16 {
    let b = key.as_bytes();
    let hashed = match b.iter().position(|&c| c == b'{') {
        Some(open) => match b[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &b[open + 1..open + 1 + len],
            _ => b,
        },
        None => b,
    };
    crc16(hashed) % SLOTS
}

/// Builds the slot-tag table now, so the first request does not pay for it.
pub(super) fn warm_slot_tags() {
    slot_tag(0);
}

/// A short tag per slot that hashes to that slot (found once by enumeration).
fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); SLOTS as usize];
        let mut missing = SLOTS as usize;
        let mut n: u64 = 0;
        while missing > 0 {
            let candidate = format!("{n:x}");
            let s = (crc16(candidate.as_bytes()) % SLOTS) as usize;
            if tags[s].is_empty() {
                tags[s] = candidate;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[slot as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_spec() {
        // Test vector from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of_key("{user1000}.following"), slot_of_key("{user1000}.followers"));
        assert_eq!(slot_of_key("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot_of_key("foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn user_keys_and_log_shard_share_a_slot() {
        let k = Keys::new("tp", true);
        for user in ["alice", "u-1", "a}b", "{x}", "}x", "#61", "Zoë"] {
            let slot = slot_of_key(&k.profile(user));
            let shared = [
                k.journey_log(user),
                k.decision_log(user),
                k.experiment_counters(user),
                k.keyring(user),
                k.log_dicts(user),
                k.log_dicts_beside(&k.keyring(user)),
                k.day_counters(user, 20_000),
                k.stage_counters(user),
            ];
            for key in k.all_of_user(user).iter().chain(&shared) {
                assert_eq!(slot_of_key(key), slot, "{key}");
            }
        }
        assert_eq!(Keys::new("tp", false).journey_log("alice"), "tp:jlog");
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        // The names ARCHITECTURE.md and the table above give: a change here is a data migration.
        let k = Keys::new("tp", false);
        assert_eq!(
            k.all_of_user("u"),
            ["p", "j", "e", "r", "d", "di", "c", "o", "x", "k"].map(|s| format!("tp:{{u}}:{s}"))
        );
        assert_eq!(k.profile("#1"), "tp:{#2331}:p");
        assert_eq!(k.experiment_counters("u"), "tp:xc");
        assert_eq!(k.decision_log_shards(), [("tp:dlog".to_string(), "tp:kr".to_string())]);
        assert_eq!(k.keyring("u"), "tp:kr");
        assert_eq!(k.log_dicts("u"), "tp:ldict");
        assert_eq!(k.log_dicts_beside("tp:kr"), "tp:ldict");
        assert_eq!(k.day_counters("u", 20_412), "tp:kd:20412");
        assert_eq!(k.stage_counters("u"), "tp:kn");
        assert_eq!(k.counter_shards(1, 2), [["tp:kn", "tp:kd:1", "tp:kd:2"]]);
        assert_eq!(k.model_versions("m"), "tp:{model:m}:v");
        assert_eq!(k.model_current("m"), "tp:{model:m}:current");
        assert_eq!(k.model_history("m"), "tp:{model:m}:history");
        let c = Keys::new("tp", true);
        let shards = c.journey_log_shards();
        assert_eq!(shards.len(), SLOTS as usize);
        assert!(shards.contains(&(c.journey_log("alice"), c.keyring("alice"))));
        assert_eq!(c.log_dicts_beside(&c.keyring("alice")), c.log_dicts("alice"));
        assert_eq!(c.journey_log("alice"), format!("tp:jlog:{{{}}}", slot_tag(slot_of_key("alice"))));
        let counters = c.counter_shards(5, 5);
        assert_eq!(counters.len(), SLOTS as usize);
        assert!(counters.contains(&vec![c.stage_counters("alice"), c.day_counters("alice", 5)]));
    }
}
