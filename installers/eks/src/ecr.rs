//! The control plane's ECR repository (`threeport-<name>`): `up` creates it (inventory kind
//! `EcrRepository`, `extra.uri` its repositoryUri), the provider pushes the image built from
//! this `tptctl` to it, `down` deletes it with whatever images it holds.

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_ecr::types::{Repository, Tag};
use base64::Engine;
use threeport_installers::image::push::Auth;

use crate::EksSpec;
use crate::aws::{AwsResultExt, CONTROL_PLANE_TAG, Found};

/// The inventory kind.
pub const KIND: &str = "EcrRepository";

/// `threeport-<name>`, like the cluster.
pub fn repository_name(spec: &EksSpec) -> String {
    spec.cluster_name()
}

/// The repository called `name`, if it exists.
pub(crate) async fn describe(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<Option<Repository>> {
    let out = (ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await)
        .aws("DescribeRepositories")
        .found()?;
    Ok(out.and_then(|o| o.repositories().first().cloned()))
}

/// The repository called `name` if it exists and carries our control-plane tag; an error if
/// it exists without it (someone else's: never adopted, never deleted).
pub(crate) async fn existing(
    ecr: &aws_sdk_ecr::Client,
    spec: &EksSpec,
    name: &str,
) -> Result<Option<Repository>> {
    let Some(repo) = describe(ecr, name).await? else {
        return Ok(None);
    };
    let arn = repo
        .repository_arn()
        .context("DescribeRepositories returned no repositoryArn")?;
    let tags =
        (ecr.list_tags_for_resource().resource_arn(arn).send().await).aws("ListTagsForResource")?;
    let ours = tags
        .tags()
        .iter()
        .any(|t| t.key() == CONTROL_PLANE_TAG && t.value() == spec.name);
    ensure!(
        ours,
        "ECR repository {name} already exists and is not tagged {CONTROL_PLANE_TAG}={}",
        spec.name
    );
    Ok(Some(repo))
}

/// Creates the repository, tagged like every other resource. One that appeared since the
/// lookup (`RepositoryAlreadyExistsException`) is taken if it is ours.
pub(crate) async fn create(
    ecr: &aws_sdk_ecr::Client,
    spec: &EksSpec,
    name: &str,
) -> Result<Repository> {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let out = (ecr.create_repository())
        .repository_name(name)
        .tags(tag("Name", name)?)
        .tags(tag(CONTROL_PLANE_TAG, &spec.name)?)
        .send()
        .await
        .aws("CreateRepository");
    match out {
        Ok(out) => out
            .repository()
            .cloned()
            .context("CreateRepository returned no repository"),
        Err(e) if e.has_code("RepositoryAlreadyExistsException") => existing(ecr, spec, name)
            .await?
            .with_context(|| format!("ECR repository {name} exists, then does not")),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the repository and its images; one already gone counts as deleted.
pub(crate) async fn delete(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<()> {
    (ecr.delete_repository()
        .repository_name(name)
        .force(true)
        .send()
        .await)
        .aws("DeleteRepository")
        .found()?;
    Ok(())
}

/// Logs in to the account's registry: `GetAuthorizationToken`, decoded.
pub async fn login(ecr: &aws_sdk_ecr::Client) -> Result<Auth> {
    let out = (ecr.get_authorization_token().send().await).aws("GetAuthorizationToken")?;
    let token = out
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .context("GetAuthorizationToken returned no authorization token")?;
    let (user, password) = decode_token(token)?;
    Ok(Auth::Basic(user, password))
}

/// An ECR authorization token is base64 of `user:password` (the user is `AWS`).
pub fn decode_token(token: &str) -> Result<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .context("the ECR authorization token is not base64")?;
    let text = String::from_utf8(bytes).context("the ECR authorization token is not UTF-8 text")?;
    let Some((user, password)) = text.split_once(':') else {
        bail!("the ECR authorization token is not `user:password`: it has no ':'");
    };
    ensure!(
        !user.is_empty() && !password.is_empty(),
        "the ECR authorization token has an empty user or password"
    );
    Ok((user.to_string(), password.to_string()))
}

/// `<repositoryUri>:<tag>`, the tag being the built reference's
/// (`threeport.local/threeport:0.1.0-0123abcd4567` → `0.1.0-0123abcd4567`).
pub fn target(repository_uri: &str, built_reference: &str) -> Result<String> {
    let name_end = built_reference.rfind('/').map_or(0, |i| i + 1);
    let tag = built_reference[name_end..]
        .split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("the built image {built_reference:?} has no tag"))?;
    Ok(format!("{repository_uri}:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn the_authorization_token_decodes_to_user_and_password() {
        assert_eq!(
            decode_token(&b64("AWS:pa:ss")).unwrap(),
            ("AWS".to_string(), "pa:ss".to_string())
        );
        let bad = decode_token("not base64!").unwrap_err();
        assert_eq!(
            format!("{bad}"),
            "the ECR authorization token is not base64"
        );
        let no_colon = decode_token(&b64("AWSpassword")).unwrap_err();
        assert_eq!(
            format!("{no_colon}"),
            "the ECR authorization token is not `user:password`: it has no ':'"
        );
        let empty = decode_token(&b64("AWS:")).unwrap_err();
        assert!(
            format!("{empty}").contains("empty user or password"),
            "{empty}"
        );
    }

    #[test]
    fn the_target_keeps_the_built_tag() {
        let uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/threeport-demo";
        assert_eq!(
            target(uri, "threeport.local/threeport:0.1.0-0123abcd4567").unwrap(),
            format!("{uri}:0.1.0-0123abcd4567")
        );
        assert_eq!(
            target(uri, "localhost:5000/threeport:v1").unwrap(),
            format!("{uri}:v1")
        );
        assert!(target(uri, "localhost:5000/threeport").is_err());
    }
}
