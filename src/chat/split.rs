//! Splitting a long reply into messages a platform accepts (Discord: 2,000 characters,
//! Slack: a few thousand), at line boundaries, without breaking a code block: a block cut in
//! two is closed at the end of one message and reopened (with its language) in the next.

/// Splits `text` into chunks of at most `limit` characters.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    assert!(limit >= 16, "a limit too small to reopen a code block");
    if text.chars().count() <= limit {
        return vec![text.to_string()];
    }
    let mut chunks = Vec::new();
    let mut current = String::new();
    // The fence line that opened the code block we are in, if any (e.g. "```rust").
    let mut open_fence: Option<String> = None;
    let close = "\n```";
    for line in text.split('\n') {
        // A single line longer than a message is cut hard.
        let pieces = hard_wrap(line, limit - close.len() - 8);
        for piece in pieces {
            let extra = piece.chars().count() + usize::from(!current.is_empty());
            let reserve = if open_fence.is_some() { close.len() } else { 0 };
            if !current.is_empty() && current.chars().count() + extra + reserve > limit {
                if open_fence.is_some() {
                    current.push_str(close);
                }
                chunks.push(std::mem::take(&mut current));
                if let Some(fence) = &open_fence {
                    current.push_str(fence);
                }
            }
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(&piece);
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            open_fence = match open_fence {
                Some(_) => None,
                None => Some(trimmed.to_string()),
            };
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn hard_wrap(line: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= width {
        return vec![line.to_string()];
    }
    chars.chunks(width).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split("hello\nworld", 2000), vec!["hello\nworld"]);
    }

    #[test]
    fn splits_at_lines_within_the_limit() {
        let text: String = (0..300).map(|i| format!("line number {i}\n")).collect();
        let chunks = split(&text, 2000);
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(c.chars().count() <= 2000, "{}", c.len());
            assert!(!c.starts_with('\n'));
        }
        assert_eq!(chunks.join("\n"), text);
    }

    #[test]
    fn code_blocks_are_closed_and_reopened() {
        let body: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{body}```\ndone");
        let chunks = split(&text, 500);
        assert!(chunks.len() > 2);
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.chars().count() <= 500);
            // Every message has balanced fences, so each renders on its own.
            assert_eq!(c.matches("```").count() % 2, 0, "chunk {i}: {c}");
            if i > 0 && i + 1 < chunks.len() {
                assert!(c.starts_with("```rust"), "chunk {i} reopens the block: {c}");
            }
        }
        assert!(chunks.last().unwrap().ends_with("done"));
    }

    #[test]
    fn a_huge_line_is_cut_hard() {
        let text = "x".repeat(5000);
        let chunks = split(&text, 2000);
        assert!(chunks.iter().all(|c| c.chars().count() <= 2000));
        assert_eq!(chunks.concat().len(), 5000);
    }
}
