//! Secrets kept out of what is shown: passwords in URLs, in a list of URLs
//! (a Redis Cluster's seed nodes), and secrets that are no URL.

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// `value`, one URL or several comma-separated, each without its password;
/// when `secret`, a part that is no URL is replaced whole.
pub(crate) fn urls(value: &str, secret: bool) -> String {
    let nodes: Vec<String> = value
        .split(',')
        .map(|node| redact_url(node.trim(), secret))
        .collect();
    nodes.join(",")
}

/// A URL with its password and any `password`/`secret` query parameter
/// replaced; a secret setting's value that is no URL is replaced whole.
fn redact_url(raw: &str, secret: bool) -> String {
    let Ok(mut url) = reqwest::Url::parse(raw) else {
        return if secret { REDACTED.into() } else { raw.into() };
    };
    let sensitive = |name: &str| {
        let name = name.to_ascii_lowercase();
        name.contains("password") || name.contains("secret")
    };
    let in_query = url.query_pairs().any(|(name, _)| sensitive(&name));
    if url.password().is_none() && !in_query {
        return raw.into();
    }
    if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
        return REDACTED.into();
    }
    if in_query {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if sensitive(&name) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // Read as written, not percent-encoded.
    url.to_string().replace("%5Bredacted%5D", REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_is_no_url_is_replaced_whole() {
        assert_eq!(redact_url("not a url", true), REDACTED);
        assert_eq!(redact_url("not a url", false), "not a url");
        assert_eq!(
            redact_url("sqlite://sse-ticket.db", false),
            "sqlite://sse-ticket.db"
        );
        assert_eq!(
            urls("postgres://u:pw@h/db?sslmode=require&password=pw2", false),
            "postgres://u:[redacted]@h/db?sslmode=require&password=[redacted]"
        );
    }

    #[test]
    fn a_redis_cluster_s_seed_list_is_logged_without_its_passwords() {
        let settings = crate::config::RedisSettings {
            url: "redis://:pw-one@a:7000,redis://:pw-two@b:7001".into(),
            prefix: "p:".into(),
            cluster: true,
        };
        let logged = format!("{settings:?}");
        assert!(
            !logged.contains("pw-one") && !logged.contains("pw-two"),
            "{logged}"
        );
        assert!(logged.contains("redis://:[redacted]@b:7001"), "{logged}");
    }
}
