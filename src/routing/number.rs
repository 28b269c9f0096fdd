//! Numbers: dial-string normalisation to E.164 (ITU-T E.164, RFC 3966 global numbers) and
//! number ranges (`+15550100000-+15550100999`).

use std::fmt;

/// An E.164 number: `+` and 2 to 15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses `+` followed by digits, rejecting anything else.
    pub fn parse(s: &str) -> Option<E164> {
        let digits = s.strip_prefix('+')?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| E164(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits as a number, for range arithmetic.
    fn value(&self) -> u64 {
        self.0[1..].parse().unwrap_or(0)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An inclusive range of E.164 numbers of the same length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRange {
    pub first: E164,
    pub last: E164,
}

impl NumberRange {
    /// Parses `+E164` or `+FIRST-+LAST` (same length, first <= last).
    pub fn parse(s: &str) -> Result<NumberRange, String> {
        let s = s.trim();
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s, s),
        };
        let first =
            E164::parse(a).ok_or_else(|| format!("'{a}' is not an E.164 number (+ and digits)"))?;
        let last =
            E164::parse(b).ok_or_else(|| format!("'{b}' is not an E.164 number (+ and digits)"))?;
        if first.0.len() != last.0.len() || first.value() > last.value() {
            return Err(format!("'{s}': a range is FIRST-LAST of the same length, FIRST <= LAST"));
        }
        Ok(NumberRange { first, last })
    }

    pub fn contains(&self, n: &E164) -> bool {
        n.0.len() == self.first.0.len()
            && (self.first.value()..=self.last.value()).contains(&n.value())
    }

    /// How many numbers the range holds.
    pub fn len(&self) -> u64 {
        self.last.value() - self.first.value() + 1
    }

    /// Never: a range holds at least one number.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The numbers of the range, in order (for callback pools).
    pub fn iter(&self) -> impl Iterator<Item = E164> + '_ {
        let width = self.first.0.len() - 1;
        (self.first.value()..=self.last.value()).map(move |v| E164(format!("+{v:0width$}")))
    }
}

impl fmt::Display for NumberRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Normalises what a caller dialled (the user part of a SIP URI, or a `tel:` number) for route
/// matching: visual separators go (RFC 3966 §5.1.1: `-`, `.`, `(`, `)`, spaces); a national
/// number becomes E.164 by the caller's country; a non-numeric user (`service`) is kept as is.
///
/// Countries: NANP members (`US`, `PR`, `CA`): 10 digits -> `+1` + digits, 11 digits starting
/// with 1 -> `+` + digits, `011` -> international. `GB`: leading `0` -> `+44`, `00` ->
/// international. Others: `00` -> international; short codes stay as dialled.
pub fn normalise(dialled: &str, country: Option<&str>) -> String {
    let cleaned: String =
        dialled.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' ')).collect();
    let (plus, digits) = match cleaned.strip_prefix('+') {
        Some(d) => (true, d),
        None => (false, cleaned.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return dialled.to_owned();
    }
    if plus {
        return format!("+{digits}");
    }
    let nanp = matches!(country, Some("US" | "PR" | "CA"));
    if nanp {
        if let Some(intl) = digits.strip_prefix("011") {
            return format!("+{intl}");
        }
        if digits.len() == 10 && !digits.starts_with(['0', '1']) {
            return format!("+1{digits}");
        }
        if digits.len() == 11 && digits.starts_with('1') {
            return format!("+{digits}");
        }
        return digits.to_owned();
    }
    if let Some(intl) = digits.strip_prefix("00") {
        return format!("+{intl}");
    }
    if country == Some("GB")
        && let Some(national) = digits.strip_prefix('0')
        && national.len() >= 9
    {
        return format!("+44{national}");
    }
    digits.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("(202) 555-0199", Some("US")), "+12025550199");
        assert_eq!(normalise("12025550199", Some("US")), "+12025550199");
        assert_eq!(normalise("+1 202 555 0199", None), "+12025550199");
        assert_eq!(normalise("011442071234567", Some("US")), "+442071234567");
        assert_eq!(normalise("02071234567", Some("GB")), "+442071234567");
        assert_eq!(normalise("0033123456789", Some("FR")), "+33123456789");
        assert_eq!(normalise("911", Some("US")), "911");
        assert_eq!(normalise("933", None), "933");
        assert_eq!(normalise("service", None), "service");
        assert_eq!(normalise("2025550199", None), "2025550199", "no country, no guess");
    }

    #[test]
    fn ranges() {
        let r = NumberRange::parse("+15550100000-+15550100999").unwrap();
        assert!(r.contains(&E164::parse("+15550100000").unwrap()));
        assert!(r.contains(&E164::parse("+15550100999").unwrap()));
        assert!(!r.contains(&E164::parse("+15550101000").unwrap()));
        assert!(!r.contains(&E164::parse("+1555010000").unwrap()));
        assert_eq!(r.iter().count(), 1000);
        assert_eq!(r.iter().next().unwrap().as_str(), "+15550100000");
        assert!(NumberRange::parse("+15550100999-+15550100000").is_err());
        assert!(NumberRange::parse("15550100000").is_err());
        assert!(NumberRange::parse("+1555-+15550100000").is_err());
        assert_eq!(NumberRange::parse("+15550100123").unwrap().iter().count(), 1);
    }
}
