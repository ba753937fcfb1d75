//! The Git LFS batch API (`POST /{repo}.git/info/lfs/objects/batch`) and its `basic` and
//! `multipart` transfers, with the verify call: how files the Hub wants through LFS get there
//! before the commit names them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::client::Body;
use super::{HubClient, HubError, RepoId};

/// An LFS upload instruction (`href` and its headers); `None` actions mean the Hub already has
/// the object.
#[derive(Clone, Debug, Default)]
pub(crate) struct LfsObject {
    pub oid: String,
    pub upload: Option<(String, BTreeMap<String, String>)>,
    pub verify: Option<String>,
}

impl HubClient {
    /// The LFS batch API's upload instructions for `objects` (SHA-256, size).
    pub(crate) fn lfs_batch(
        &self,
        repo: &RepoId,
        revision: &str,
        objects: &[(String, u64)],
    ) -> Result<Vec<LfsObject>, HubError> {
        let url = format!("{}/{repo}.git/info/lfs/objects/batch", self.endpoint());
        let body = json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects.iter().map(|(oid, size)| json!({"oid": oid, "size": size})).collect::<Vec<_>>(),
            "hash_algo": "sha256",
            "ref": {"name": revision},
        });
        let lfs = [
            ("Accept", "application/vnd.git-lfs+json"),
            ("Content-Type", "application/vnd.git-lfs+json"),
        ];
        let resp = self.send("LFS batch", "POST", &url, &lfs, Body::Json(&body), true, 3)?;
        let v = Self::json("LFS batch", &url, resp)?;
        let bad = |reason: String| HubError::Protocol {
            what: "LFS batch".into(),
            url: url.clone(),
            reason,
        };
        let mut out = Vec::new();
        for o in v["objects"]
            .as_array()
            .ok_or_else(|| bad("no `objects`".into()))?
        {
            let oid = o["oid"]
                .as_str()
                .ok_or_else(|| bad("an object without `oid`".into()))?;
            if let Some(e) = o.get("error") {
                return Err(bad(format!("object {oid}: {e}")));
            }
            let action = |name: &str| {
                let a = &o["actions"][name];
                a["href"].as_str().map(|href| {
                    let headers = a["header"]
                        .as_object()
                        .map(|h| {
                            h.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into()))
                                .collect()
                        })
                        .unwrap_or_default();
                    (href.to_string(), headers)
                })
            };
            out.push(LfsObject {
                oid: oid.to_string(),
                upload: action("upload"),
                verify: action("verify").map(|(href, _)| href),
            });
        }
        Ok(out)
    }

    /// Uploads `file` (`size` bytes) as LFS object `obj`: one `PUT` (basic transfer) or, when
    /// the Hub gives a `chunk_size`, one `PUT` per numbered part URL and a completion `POST`
    /// (multipart); then the verify call when there is one.
    pub(crate) fn lfs_upload(
        &self,
        obj: &LfsObject,
        file: &Path,
        size: u64,
        path_in_repo: &str,
    ) -> Result<(), HubError> {
        let Some((href, header)) = &obj.upload else {
            return Ok(());
        };
        let what = format!("upload {path_in_repo}");
        if let Some(chunk) = header.get("chunk_size") {
            let chunk: u64 =
                chunk
                    .parse()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or_else(|| HubError::Protocol {
                        what: what.clone(),
                        url: href.clone(),
                        reason: format!("bad chunk_size `{chunk}`"),
                    })?;
            let mut parts: Vec<(u64, &String)> = header
                .iter()
                .filter_map(|(k, v)| k.parse::<u64>().ok().map(|n| (n, v)))
                .collect();
            parts.sort();
            if parts.len() as u64 != size.div_ceil(chunk) {
                return Err(HubError::Protocol {
                    what,
                    url: href.clone(),
                    reason: format!(
                        "{} part URLs for {size} bytes in {chunk}-byte parts",
                        parts.len()
                    ),
                });
            }
            let mut etags = Vec::new();
            for (i, (n, part_url)) in parts.iter().enumerate() {
                let offset = i as u64 * chunk;
                let len = chunk.min(size - offset);
                let resp = self.send(
                    &what,
                    "PUT",
                    part_url,
                    &[],
                    Body::File(file, offset, len),
                    false,
                    3,
                )?;
                let etag = resp.header("ETag").unwrap_or_default().to_string();
                if etag.is_empty() {
                    return Err(HubError::Protocol {
                        what,
                        url: (*part_url).clone(),
                        reason: format!("part {n} answered without an ETag"),
                    });
                }
                etags.push(json!({"partNumber": n, "etag": etag}));
            }
            let done = json!({"oid": obj.oid, "parts": etags});
            let lfs = [("Accept", "application/vnd.git-lfs+json")];
            self.send(&what, "POST", href, &lfs, Body::Json(&done), false, 3)?;
        } else {
            self.send(&what, "PUT", href, &[], Body::File(file, 0, size), false, 3)?;
        }
        if let Some(verify) = &obj.verify {
            let body = json!({"oid": obj.oid, "size": size});
            self.send(
                &format!("verify {path_in_repo}"),
                "POST",
                verify,
                &[],
                Body::Json(&body),
                true,
                3,
            )?;
        }
        Ok(())
    }
}
