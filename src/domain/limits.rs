//! Input limits and the field-level validation shared by every entry point.
use std::fmt;

/// Longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest event, decision or offer id (and placement), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Most offers one decision may ask for (`limit`, and `decisions.default_limit`).
pub const MAX_LIMIT: u32 = 50;
/// Most entries in a decision request's `context` map.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Longest attribute, context or property key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest string value of an attribute, context entry or property, in bytes.
pub const MAX_STRING_VALUE_BYTES: usize = 1024;
/// Most events in one `RecordEvents` call.
pub const MAX_EVENTS_PER_CALL: usize = 1000;
/// Most users in one `DecideBatch` call.
pub const MAX_BATCH_USERS: usize = 10_000;
/// Most properties on one event.
pub const MAX_PROPERTIES: usize = 64;
/// Most attributes one `PutProfile` call may set (and, separately, remove).
pub const MAX_ATTRIBUTES_PER_CALL: usize = 256;
/// Longest event type, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 64;
/// Events may carry a time up to this far ahead of the server clock (clock skew).
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 3_600_000;
/// Monetary values beyond this are rejected (keeps totals finite).
pub const MAX_ABS_VALUE: f64 = 1e12;
/// Distinct event types counted per profile; further types are counted under `other`.
pub const MAX_EVENT_TYPES_PER_USER: usize = 64;
/// Attributes a profile may hold.
pub const MAX_ATTRIBUTES_PER_PROFILE: usize = 256;

/// A request field that failed validation: `field` is the protobuf path (e.g. `events[3].event_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field's path.
    pub field: String,
    /// What is wrong with it (lowercase, no trailing period).
    pub message: String,
}

impl FieldError {
    /// An error for `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A required identifier: 1..=max bytes of printable text (no control characters).
pub fn check_id(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if value.len() > max {
        return Err(FieldError::new(field, format!("is {} bytes, at most {max} allowed", value.len())));
    }
    if value.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(FieldError::new(field, "contains a control or invisible formatting character"));
    }
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "is blank"));
    }
    Ok(())
}

/// Unicode's format characters (general category Cf: soft hyphen, zero-width, bidirectional,
/// invisible operators, tags, ...) and the line and paragraph separators (U+0085 is a control
/// already): printable ids must not hide text or break log lines. The ranges are Unicode 15's Cf.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// A name used as a map key or event type: 1..=max bytes of `[A-Za-z0-9_.:-]`.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if value.len() > max {
        return Err(FieldError::new(field, format!("is {} bytes, at most {max} allowed", value.len())));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')) {
        return Err(FieldError::new(field, "may contain only letters, digits and _ . : -"));
    }
    Ok(())
}

/// A finite number within ±`MAX_ABS_VALUE`.
pub fn check_finite(field: &str, value: f64) -> Result<(), FieldError> {
    if !value.is_finite() {
        Err(FieldError::new(field, "must be a finite number"))
    } else if value.abs() > MAX_ABS_VALUE {
        Err(FieldError::new(field, format!("must be within ±{MAX_ABS_VALUE:e}")))
    } else {
        Ok(())
    }
}

/// A monetary amount: finite, within ±`MAX_ABS_VALUE` and not negative (refunds are not
/// conversions; a negative value would lower totals and experiment revenue).
pub fn check_amount(field: &str, value: f64) -> Result<(), FieldError> {
    check_finite(field, value)?;
    if value < 0.0 {
        return Err(FieldError::new(field, format!("is negative ({value}), must be 0 or more")));
    }
    Ok(())
}

/// Free text of at most `max` bytes (may be empty).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(field, format!("is {} bytes, at most {max} allowed", value.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(result: Result<(), FieldError>, expected: Option<&str>) {
        match (result, expected) {
            (Ok(()), None) => {}
            (Err(e), Some(msg)) => assert!(e.message.contains(msg), "{e} should mention {msg}"),
            (r, e) => panic!("got {r:?}, expected {e:?}"),
        }
    }

    #[test]
    fn ids() {
        check(check_id("user_id", "u-1", 128), None);
        check(check_id("user_id", "", 128), Some("required"));
        check(check_id("user_id", &"x".repeat(129), 128), Some("at most 128"));
        check(check_id("user_id", "a\nb", 128), Some("control"));
        check(check_id("user_id", "Zoë 42", 128), None);
        check(check_id("user_id", "}x{", 128), None);
        check(check_id("user_id", "   ", 128), Some("blank"));
        check(check_id("user_id", "a\u{200B}b", 128), Some("invisible"));
        for c in
            ['\u{2028}', '\u{2029}', '\u{0085}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200D}', '\u{FEFF}']
        {
            check(check_id("user_id", &format!("a{c}b"), 128), Some("control or invisible"));
        }
    }

    #[test]
    fn names() {
        check(check_name("event_type", "page_view", 64), None);
        check(check_name("event_type", "page view", 64), Some("letters"));
        check(check_name("event_type", "", 64), Some("required"));
    }

    #[test]
    fn finite() {
        check(check_finite("value", 1.5), None);
        check(check_finite("value", f64::NAN), Some("finite"));
        check(check_finite("value", f64::INFINITY), Some("finite"));
        check(check_finite("value", -2e12), Some("within"));
        check(check_amount("value", 0.0), None);
        check(check_amount("value", -0.01), Some("negative"));
        check(check_amount("value", f64::NAN), Some("finite"));
    }
}
