//! A person's links: stream credentials (as `mtx-auth token issue` makes them) for one action on
//! one path, owned by the person who made them, never granting more than the holding they came
//! from (its `ips` rule travels with them), and the URLs that carry them in every player.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::issued::IssuedCredentials;
use crate::permission::Action;
use crate::portal::config::Urls;
use crate::portal::people::{Grant, Holding, Person};
use crate::store::feed::{hex_digest, issued_from};
use crate::store::{CredentialRecord, PermissionRecord, Store, StoreError};

/// What a link records of where it came from (the credentials table's `grant_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkGrant {
    pub grant: Grant,
    /// Set for the credentials `/forward-auth` makes for a web session (the digest of its
    /// id): not listed among the person's links, and revoked when that session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl LinkGrant {
    pub fn of(record: &CredentialRecord) -> Option<LinkGrant> {
        serde_json::from_str(record.grant.as_deref()?).ok()
    }
}

/// A link just made: the only time its credential is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewLink {
    pub id: String,
    pub token: String,
    pub action: String,
    pub path: String,
    pub expires_at: i64,
}

/// Makes a credential for `action` on `path` from `holding`, stores it, and puts it in force in
/// this process at once (other replicas within the store feed's poll).
#[allow(clippy::too_many_arguments)]
pub async fn mint(
    store: &Store,
    issued: &IssuedCredentials,
    person: &Person,
    holding: &Holding,
    action: Action,
    path: &str,
    expires_at: i64,
    session: Option<String>,
    now: i64,
) -> Result<NewLink, StoreError> {
    let new = crate::issued::generate();
    let grant = LinkGrant {
        grant: holding.grant.clone(),
        session,
    };
    let record = CredentialRecord {
        id: crate::issued::new_id(),
        digest: hex_digest(&new.digest),
        name: person.name.clone(),
        permissions: vec![PermissionRecord {
            action: action.as_str().into(),
            path: path.into(),
        }],
        owner: Some(person.key()),
        created_at: now,
        expires_at: Some(expires_at),
        revoked_at: None,
        ips: holding.ips.clone(),
        grant: Some(serde_json::to_string(&grant).map_err(|e| StoreError::Corrupt(e.to_string()))?),
    };
    store.insert_credential(&record).await?;
    let (digest, credential) = issued_from(&record);
    issued.apply([(digest, Arc::new(credential))]);
    Ok(NewLink {
        id: record.id,
        token: new.token,
        action: action.as_str().into(),
        path: path.into(),
        expires_at,
    })
}

/// The URLs of a link, one per protocol `[portal.urls]` names (`None` for the others).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkUrls {
    pub rtsp: Option<String>,
    pub hls: Option<String>,
    pub webrtc: Option<String>,
    pub srt: Option<String>,
    pub rtmp: Option<String>,
}

/// Each protocol's way of carrying the credential: in the RTSP URL's user info, in the query of
/// MediaMTX's HLS and WebRTC pages (which forward it to `/auth`), in the SRT stream id's pass
/// field, and as RTMP's `user`/`pass` query.
pub fn urls(base: &Urls, action: &str, path: &str, token: &str) -> LinkUrls {
    let publish = action == "publish";
    let user = if publish { "publisher" } else { "viewer" };
    let with_userinfo = |url: &str| {
        url.split_once("://")
            .map(|(scheme, rest)| format!("{scheme}://{user}:{token}@{rest}/{path}"))
    };
    LinkUrls {
        rtsp: base.rtsp.as_deref().and_then(with_userinfo),
        hls: base
            .hls
            .as_deref()
            .filter(|_| !publish)
            .map(|u| format!("{u}/{path}/?token={token}")),
        webrtc: base.webrtc.as_deref().map(|u| match publish {
            true => format!("{u}/{path}/publish?token={token}"),
            false => format!("{u}/{path}/?token={token}"),
        }),
        srt: base.srt.as_deref().map(|u| {
            let mode = if publish { "publish" } else { "read" };
            format!("{u}?streamid={mode}:{path}:{user}:{token}")
        }),
        rtmp: base
            .rtmp
            .as_deref()
            .map(|u| format!("{u}/{path}?user={user}&pass={token}")),
    }
}

/// A path a link may be made for: what MediaMTX accepts as a path name (letters, digits and
/// `_-.~/`), not empty, no `..`, at most 200 characters. Keeps a URL we build from it intact.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("..")
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.~/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_carries_the_credential() {
        let base = Urls {
            rtsp: Some("rtsp://h:8554".into()),
            rtmp: Some("rtmp://h:1935".into()),
            srt: Some("srt://h:8890".into()),
            hls: Some("https://h:8888".into()),
            webrtc: Some("https://h:8889".into()),
        };
        let u = urls(&base, "read", "cam1", "mtxa_X");
        assert_eq!(u.rtsp.unwrap(), "rtsp://viewer:mtxa_X@h:8554/cam1");
        assert_eq!(u.hls.unwrap(), "https://h:8888/cam1/?token=mtxa_X");
        assert_eq!(u.webrtc.unwrap(), "https://h:8889/cam1/?token=mtxa_X");
        assert_eq!(
            u.srt.unwrap(),
            "srt://h:8890?streamid=read:cam1:viewer:mtxa_X"
        );
        assert_eq!(
            u.rtmp.unwrap(),
            "rtmp://h:1935/cam1?user=viewer&pass=mtxa_X"
        );
        let p = urls(&base, "publish", "live/a", "mtxa_Y");
        assert_eq!(p.hls, None);
        assert_eq!(
            p.webrtc.unwrap(),
            "https://h:8889/live/a/publish?token=mtxa_Y"
        );
        assert_eq!(
            urls(&Urls::default(), "read", "c", "t"),
            LinkUrls::default()
        );
    }

    #[test]
    fn paths_that_cannot_break_a_url() {
        for ok in ["cam1", "live/a", "a.b-c_d~e"] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in [
            "", "/cam", "cam/", "a/../b", "a b", "a?b", "a@b", "~^x", "a//b",
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
    }
}
