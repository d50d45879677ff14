//! Error text fit for logs and health reports: an error with its sources on one line, with
//! the password of any URL in it replaced by `***`.

/// `error` and its sources, on one line, redacted (see [`text`]).
pub(crate) fn error(error: &dyn std::error::Error) -> String {
    text(&chain(error))
}

/// An error and its sources, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` with the password of any URL in it replaced by `***`.
pub(crate) fn text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                redact_url(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(feature = "redis")]
fn redact_url(url: &str) -> String {
    crate::redis::redact(url)
}

#[cfg(not(feature = "redis"))]
fn redact_url(url: &str) -> String {
    // Without the Redis helper: drop the user-info part entirely.
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_errors_lose_their_passwords() {
        let redacted = text("could not reach redis://:hunter2@10.0.0.5:6379/0 (refused)");
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert_eq!(text("plain error"), "plain error");
    }
}
