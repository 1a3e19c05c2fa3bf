//! A signer of `SDK-HMAC-SHA256` requests, written from the wire contract
//! (`docs/REST.md`, section 5), not taken from the server: the signing
//! tests check it against signatures the official SDK produced.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The lower-case hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Percent-encoding of a URI segment or query part, as the signer does.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The signature of a request, per the wire contract.
pub fn sign(
    sk: &str,
    date: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let mut uri: String = path.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let mut q: Vec<(String, String)> = query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    q.sort();
    let q: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut lines = String::new();
    for (k, v) in headers {
        lines.push_str(&format!("{k}:{}\n", v.trim()));
    }
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let canonical = format!(
        "{method}\n{uri}\n{}\n{lines}\n{}\n{}",
        q.join("&"),
        names.join(";"),
        hex_sha256(body)
    );
    let to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex_sha256(canonical.as_bytes())
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header of a signed request.
pub fn authorization(ak: &str, signed: &str, signature: &str) -> String {
    format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={signature}")
}
