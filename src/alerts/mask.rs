//! Masking of phone numbers inside free text and arbitrary event data, keeping the last 4
//! digits of each number.

use serde_json::Value;

/// Minimum number of digits in a run that is treated as a phone number.
const MIN_PHONE_DIGITS: usize = 7;
/// Digits left visible at the end of a masked number.
const KEPT_DIGITS: usize = 4;

/// Masks every run of at least 7 digits in `text`, where the digits may be separated by spaces,
/// dashes, dots and parentheses and the run may start with `+`: `call +1 (415) 555-1234 now`
/// becomes `call +•••••••1234 now`. A run shaped like an ISO date (`2026-12-04`) is kept.
///
/// NOTE: any other run of 7 or more digits in free text, such as an id or an amount, is masked
/// too. Hiding a number that is not a phone number is the safer mistake.
pub fn mask_phone_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut masked = String::with_capacity(text.len());
    let mut index = 0;
    while index < chars.len() {
        match digit_run_at(&chars, index) {
            Some((end, true)) => {
                let run: String = chars[index..end].iter().collect();
                masked.push_str(&mask_run(&run));
                index = end;
            }
            Some((end, false)) => {
                masked.extend(&chars[index..end]);
                index = end;
            }
            None => {
                masked.push(chars[index]);
                index += 1;
            }
        }
    }
    masked
}

/// Returns a copy of `value` with the phone numbers in every string, object key and integer
/// masked, through nested objects and arrays. An integer that is masked becomes a string.
pub fn mask_json(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(mask_phone_numbers(text)),
        Value::Number(number) => {
            let text = number.to_string();
            let masked = mask_phone_numbers(&text);
            if masked == text {
                value.clone()
            } else {
                Value::String(masked)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(mask_json).collect()),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, item)| (mask_phone_numbers(key), mask_json(item)))
                .collect(),
        ),
        Value::Null | Value::Bool(_) => value.clone(),
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')')
}

/// Returns the end of the run of digits and separators that starts at `start`, if one does,
/// and whether that run is a phone number.
fn digit_run_at(chars: &[char], start: usize) -> Option<(usize, bool)> {
    let first = chars[start];
    let next = chars.get(start + 1).copied();
    let starts_number = first.is_ascii_digit()
        || (matches!(first, '+' | '(') && next.is_some_and(|c| c.is_ascii_digit() || c == '('));
    if !starts_number {
        return None;
    }
    let mut end = start + 1;
    let mut last_digit_end = if first.is_ascii_digit() {
        Some(end)
    } else {
        None
    };
    while let Some(&c) = chars.get(end) {
        if c.is_ascii_digit() {
            end += 1;
            last_digit_end = Some(end);
        } else if is_separator(c) {
            end += 1;
        } else {
            break;
        }
    }
    let end = last_digit_end?;
    let run: String = chars[start..end].iter().collect();
    let digits = run.chars().filter(char::is_ascii_digit).count();
    Some((end, digits >= MIN_PHONE_DIGITS && !is_iso_date(&run)))
}

/// Returns whether `run` starts with a `YYYY-MM-DD` date and has no other separators.
fn is_iso_date(run: &str) -> bool {
    let bytes = run.as_bytes();
    let date_shape = bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    date_shape && bytes[10..].iter().all(u8::is_ascii_digit)
}

/// Masks one phone number: a leading `+` stays, separators are dropped, and every digit but
/// the last 4 becomes `•`.
fn mask_run(run: &str) -> String {
    let digits = run.chars().filter(char::is_ascii_digit).count();
    let keep_from = digits.saturating_sub(KEPT_DIGITS);
    let mut masked = String::new();
    if run.starts_with('+') {
        masked.push('+');
    }
    for (position, digit) in run.chars().filter(char::is_ascii_digit).enumerate() {
        masked.push(if position >= keep_from { digit } else { '•' });
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_shapes_masked() {
        let cases = [
            ("+14155551234", "+•••••••1234"),
            ("14155551234", "•••••••1234"),
            ("call +1 415 555 1234 now", "call +•••••••1234 now"),
            ("call (415) 555-1234.", "call ••••••1234."),
            ("+1 (415) 555-1234", "+•••••••1234"),
            ("415.555.1234 and 415-555-9876", "••••••1234 and ••••••9876"),
            ("to:+14155551234,", "to:+•••••••1234,"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_phone_numbers(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn short_numbers_and_dates_kept() {
        let cases = [
            "3 failures in 15 min",
            "code 123456",
            "retry at 2026-12-04T10:00:00Z",
            "error rate 0.25",
            "",
        ];
        for input in cases {
            assert_eq!(mask_phone_numbers(input), input, "input {input:?}");
        }
    }

    #[test]
    fn non_ascii_text_around_numbers() {
        assert_eq!(
            mask_phone_numbers("Rückruf → 0049 30 1234567 ✓"),
            "Rückruf → •••••••••4567 ✓"
        );
    }

    #[test]
    fn json_masked_recursively() {
        let value = json!({
            "to": "14155551234",
            "contact": "+1 415 555 1234",
            "customer": {"phone": "+14155551234", "tags": ["vip", "alt 415-555-0000"]},
            "number": 14155551234_u64,
            "count": 12,
            "ok": true,
            "14155550000": null,
        });
        let masked = mask_json(&value);
        assert_eq!(masked["to"], "•••••••1234");
        assert_eq!(masked["contact"], "+•••••••1234");
        assert_eq!(masked["customer"]["phone"], "+•••••••1234");
        assert_eq!(masked["customer"]["tags"][0], "vip");
        assert_eq!(masked["customer"]["tags"][1], "alt ••••••0000");
        assert_eq!(masked["number"], "•••••••1234");
        assert_eq!(masked["count"], 12);
        assert_eq!(masked["ok"], true);
        assert!(masked.get("•••••••0000").is_some());
        assert!(!masked.to_string().contains("415555"));
    }
}
