//! The pure half of dispatching: is a message addressed to the bot, and what are its words.
//! No I/O, so every rule is unit-tested here.

/// How the bot is addressed: its name (`@deputy`, `deputy:`) and configured aliases (`!`).
#[derive(Debug, Clone)]
pub struct Addressing {
    pub name: String,
    pub aliases: Vec<String>,
    /// Platform mention forms (`<@123>`), added by adapters that know the bot's id.
    pub mentions: Vec<String>,
}

impl Addressing {
    pub fn new(name: &str, aliases: &[String]) -> Addressing {
        Addressing {
            name: name.to_string(),
            aliases: aliases.to_vec(),
            mentions: Vec::new(),
        }
    }

    /// The command text of a message addressed to the bot, or `None` when it is not for us.
    /// In a direct message the address is optional.
    pub fn strip<'a>(&self, text: &'a str, direct: bool) -> Option<&'a str> {
        let text = text.trim();
        if let Some(rest) = self.strip_name(text) {
            return Some(rest.trim());
        }
        for m in &self.mentions {
            if let Some(rest) = text.strip_prefix(m.as_str()) {
                return Some(rest.trim_start_matches([':', ',']).trim());
            }
        }
        for a in &self.aliases {
            if let Some(rest) = text.strip_prefix(a.as_str()) {
                return Some(rest.trim());
            }
        }
        direct.then_some(text)
    }

    /// `@deputy …`, `deputy: …`, `deputy, …`, `deputy …` (any case), or the name alone.
    fn strip_name<'a>(&self, text: &'a str) -> Option<&'a str> {
        let body = text.strip_prefix('@').unwrap_or(text);
        let n = self.name.len();
        if body.len() < n
            || !body.is_char_boundary(n)
            || !body[..n].eq_ignore_ascii_case(&self.name)
        {
            return None;
        }
        let rest = &body[n..];
        match rest.chars().next() {
            None => Some(""),
            Some(':' | ',') => Some(&rest[1..]),
            Some(c) if c.is_whitespace() => Some(rest),
            // "deputyfoo" is another word, not our name.
            Some(_) => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    UnclosedQuote,
}

/// Splits command text into words, honouring single and double quotes and backslashes.
pub fn words(text: &str) -> Result<Vec<String>, ParseError> {
    // Runs on every message, and most have none of the characters shell_words treats
    // specially: then its words are the runs between its three delimiters, found without
    // its character-by-character state machine. (ASCII bytes never occur inside a multi-byte
    // character, so a byte scan is exact.)
    if !text
        .bytes()
        .any(|b| matches!(b, b'\'' | b'"' | b'\\' | b'#'))
    {
        // Bytes, not chars: a char pattern decodes every character on the way.
        return Ok(text
            .as_bytes()
            .split(|b| matches!(b, b' ' | b'\t' | b'\n'))
            .filter(|w| !w.is_empty())
            // Cut at ASCII bytes, so each piece is whole characters of `text`.
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect());
    }
    shell_words::split(text).map_err(|_| ParseError::UnclosedQuote)
}

/// The built-ins, by their one name.
const BUILTINS: [&str; 6] = ["setupauth", "setkey", "logout", "whoami", "help", "auth"];

/// Rewrites the spellings people type for a built-in into its one name: `set up auth`,
/// `set-up-auth`, `setup auth` all mean `setupauth` (Hubot users typed them all).
///
/// Runs on every message, so it compares lowercased characters as they come instead of
/// building lowercased copies; only a match allocates.
pub fn normalize_builtin(words: &[String]) -> Option<(String, usize)> {
    if words.len() >= 3 && spells(&words[..3], "setupauth", false) {
        return Some(("setupauth".into(), 3));
    }
    if words.len() >= 2 && spells(&words[..2], "setupauth", false) {
        return Some(("setupauth".into(), 2));
    }
    let first = words.first()?;
    BUILTINS
        .iter()
        .find(|b| spells(std::slice::from_ref(first), b, true))
        .map(|b| (b.to_string(), 1))
}

/// Whether `words`, lowercased and joined (without `-` and `_` when `loose`), are `target`.
fn spells(words: &[String], target: &str, loose: bool) -> bool {
    // Most first words spell no built-in, and their first byte, when ASCII, tells.
    if let Some(&b) = words.first().and_then(|w| w.as_bytes().first()) {
        if b.is_ascii()
            && !(loose && matches!(b, b'-' | b'_'))
            && target.as_bytes().first() != Some(&b.to_ascii_lowercase())
        {
            return false;
        }
    }
    // Nearly every message is ASCII: compare bytes, without the char iterators below.
    if words.iter().all(|w| w.is_ascii()) {
        let mut want = target.bytes();
        let got = words
            .iter()
            .flat_map(|w| w.bytes())
            .filter(|b| !(loose && matches!(b, b'-' | b'_')));
        for b in got {
            if want.next() != Some(b.to_ascii_lowercase()) {
                return false;
            }
        }
        return want.next().is_none();
    }
    let mut want = target.chars();
    let mut got = words
        .iter()
        .flat_map(|w| w.chars().flat_map(char::to_lowercase))
        .filter(|c| !(loose && matches!(c, '-' | '_')));
    loop {
        match (got.next(), want.next()) {
            (None, None) => return true,
            (a, b) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Addressing {
        let mut a = Addressing::new("deputy", &["!".to_string()]);
        a.mentions.push("<@42>".into());
        a
    }

    #[test]
    fn addressed_forms() {
        let a = addr();
        for text in [
            "@deputy jenkins last x",
            "deputy: jenkins last x",
            "Deputy, jenkins last x",
            "DEPUTY jenkins last x",
            "!jenkins last x",
            "! jenkins last x",
            "<@42> jenkins last x",
            "  @deputy   jenkins last x  ",
        ] {
            assert_eq!(a.strip(text, false), Some("jenkins last x"), "{text}");
        }
    }

    #[test]
    fn not_addressed_in_public() {
        let a = addr();
        assert_eq!(a.strip("jenkins last x", false), None);
        assert_eq!(a.strip("deputyfoo jenkins", false), None);
        assert_eq!(a.strip("hello @deputy", false), None);
        assert_eq!(a.strip("jenkins last x", true), Some("jenkins last x"));
        assert_eq!(a.strip("@deputy", false), Some(""));
    }

    #[test]
    fn quoted_words() {
        assert_eq!(
            words(r#"gh issue o/r "a title with 'quotes'" x\ y"#).unwrap(),
            vec!["gh", "issue", "o/r", "a title with 'quotes'", "x y"]
        );
        assert_eq!(words("t tweet \"unclosed"), Err(ParseError::UnclosedQuote));
        assert_eq!(words("   ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn builtin_spellings() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            normalize_builtin(&w("set up auth")),
            Some(("setupauth".into(), 3))
        );
        assert_eq!(
            normalize_builtin(&w("setup auth")),
            Some(("setupauth".into(), 2))
        );
        assert_eq!(
            normalize_builtin(&w("set-key a:b")),
            Some(("setkey".into(), 1))
        );
        assert_eq!(normalize_builtin(&w("build x")), None);
    }

    #[test]
    fn words_agree_with_shell_words() {
        use rand::{Rng, SeedableRng};
        let fixed = [
            "",
            "   ",
            "jenkins whoami",
            "  jenkins\tbuild \n deploy  ",
            "a\u{a0}b\rc\u{3000}d",
            "it's",
            "say \"hi there\"",
            "back\\ slash",
            "C# and #comment",
            "x #y",
            "ünïcödé wörds",
        ];
        let alphabet: Vec<char> = "ab ü\t\n\r\u{a0}'\"\\#-".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let random = (0..5000).map(|_| {
            let len = rng.gen_range(0..12);
            (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect::<String>()
        });
        for text in fixed.iter().map(|t| t.to_string()).chain(random) {
            let oracle = shell_words::split(&text).map_err(|_| ParseError::UnclosedQuote);
            assert_eq!(words(&text), oracle, "{text:?}");
        }
    }

    /// The first, allocating version, kept as the oracle for the one that compares in place.
    fn normalize_by_copying(words: &[String]) -> Option<(String, usize)> {
        let lower: Vec<String> = words.iter().take(3).map(|w| w.to_lowercase()).collect();
        if lower.len() >= 3 && lower.join("") == "setupauth" {
            return Some(("setupauth".into(), 3));
        }
        if lower.len() >= 2 && lower[..2].concat() == "setupauth" {
            return Some(("setupauth".into(), 2));
        }
        let name = lower.first()?.replace(['-', '_'], "");
        BUILTINS.contains(&name.as_str()).then_some((name, 1))
    }

    #[test]
    fn normalize_agrees_with_copying_version() {
        let pieces = [
            "",
            "set",
            "SET",
            "up",
            "Up",
            "auth",
            "AUTH",
            "setup",
            "setupauth",
            "set-up-auth",
            "Set_Key",
            "setkey",
            "logout",
            "LOG-OUT",
            "who_ami",
            "help",
            "h",
            "authx",
            "é",
            "\u{212A}",
            "seTUPa",
            "uth",
            "-",
            "build",
        ];
        let mut n = 0;
        for a in pieces {
            for b in pieces {
                for c in ["", "auth", "x", "AUTH"] {
                    for len in 0..=3 {
                        let words: Vec<String> =
                            [a, b, c].iter().take(len).map(|s| s.to_string()).collect();
                        assert_eq!(
                            normalize_builtin(&words),
                            normalize_by_copying(&words),
                            "{words:?}"
                        );
                        n += 1;
                    }
                }
            }
        }
        assert!(n > 1000);
    }
}
