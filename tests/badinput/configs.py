"""Bad stack configs, as the engine hands them to the program: full keys to string values, plus the
keys set with --secret. ``expect`` holds the key and the words of the problem and of the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

NS = "artifact-slice"
GOOD = {f"{NS}:org": "personal", f"{NS}:primaryRegion": "syd", f"{NS}:domain": "org1.artifact.example.com",
        "fly:apiBaseUrl": "https://api.machines.dev", "fly:flapsBaseUrl": "https://api.machines.dev"}
REMOVE = None


@dataclass(frozen=True)
class BadConfig:
    id: str
    set: dict[str, str | None]
    expect: tuple[str, ...]
    secret: frozenset[str] = field(default_factory=frozenset)
    stack: str = "org1"
    hidden: str | None = None  # a credential the message must never repeat

    def values(self) -> dict[str, str]:
        out = {**GOOD, **self.set}
        return {k: v for k, v in out.items() if v is not None}


def _c(id: str, set: dict[str, str | None], *expect: str, secret: tuple[str, ...] = (), stack: str = "org1",
       hidden: str | None = None) -> BadConfig:
    return BadConfig(id, set, expect, frozenset(secret), stack, hidden)


CONFIGS: list[BadConfig] = [
    # region
    _c("region-unknown", {f"{NS}:primaryRegion": "zzz"}, f"{NS}:primaryRegion", "is not a Fly region", "syd",
       "pulumi config set artifact-slice:primaryRegion"),
    _c("region-city-name", {f"{NS}:primaryRegion": "Sydney"}, f"{NS}:primaryRegion", "did you mean syd"),
    _c("region-uppercase", {f"{NS}:primaryRegion": "SYD"}, f"{NS}:primaryRegion", "lowercase", "'syd'"),
    _c("region-typo", {f"{NS}:primaryRegion": "sdy"}, "did you mean syd"),
    _c("region-two-letters", {f"{NS}:primaryRegion": "fr"}, "did you mean fra"),
    _c("region-city-london", {f"{NS}:primaryRegion": "london"}, "did you mean lhr"),
    _c("region-empty", {f"{NS}:primaryRegion": ""}, f"{NS}:primaryRegion", "three letters"),
    _c("region-aws-style", {f"{NS}:primaryRegion": "us-east-1"}, f"{NS}:primaryRegion", "is not a Fly region"),
    _c("region-space", {f"{NS}:primaryRegion": "syd "}, f"{NS}:primaryRegion", "'syd'"),
    _c("region-missing", {f"{NS}:primaryRegion": REMOVE}, f"{NS}:primaryRegion", "is required",
       "pulumi config set artifact-slice:primaryRegion"),
    _c("region-list", {f"{NS}:primaryRegion": "syd,fra"}, f"{NS}:primaryRegion", "is not a Fly region"),
    # org
    _c("org-300-chars", {f"{NS}:org": "o" * 300}, f"{NS}:org", "300 characters", "at most 63"),
    _c("org-display-name", {f"{NS}:org": "Acme Corp"}, f"{NS}:org", "not an organization slug", "not the display name"),
    _c("org-capitals", {f"{NS}:org": "ACME"}, f"{NS}:org", "capital letters", "use 'acme'"),
    _c("org-space", {f"{NS}:org": "acme corp"}, f"{NS}:org", "not an organization slug", "fly orgs list"),
    _c("org-underscore", {f"{NS}:org": "acme_corp"}, f"{NS}:org", "lowercase letters, digits and '-'"),
    _c("org-leading-dash", {f"{NS}:org": "-acme"}, f"{NS}:org", "starting and ending with a letter or digit"),
    _c("org-trailing-dash", {f"{NS}:org": "acme-"}, f"{NS}:org", "starting and ending"),
    _c("org-empty", {f"{NS}:org": ""}, f"{NS}:org", "is empty", "fly orgs list"),
    _c("org-missing", {f"{NS}:org": REMOVE}, f"{NS}:org", "is required", "pulumi config set artifact-slice:org"),
    _c("org-unicode", {f"{NS}:org": "acmé"}, f"{NS}:org", "not an organization slug"),
    _c("org-dot", {f"{NS}:org": "acme.io"}, f"{NS}:org", "not an organization slug"),
    # domain
    _c("domain-leading-dash", {f"{NS}:domain": "-x.com"}, f"{NS}:domain", "starts or ends with '-'"),
    _c("domain-trailing-dash-label", {f"{NS}:domain": "a-.example.com"}, f"{NS}:domain", "starts or ends with '-'"),
    _c("domain-url", {f"{NS}:domain": "https://org1.example.com"}, f"{NS}:domain", "is a URL", "name alone"),
    _c("domain-path", {f"{NS}:domain": "org1.example.com/app"}, f"{NS}:domain", "is a URL"),
    _c("domain-space", {f"{NS}:domain": "org1 .example.com"}, f"{NS}:domain", "contains a space"),
    _c("domain-no-dot", {f"{NS}:domain": "localhost"}, f"{NS}:domain", "has no dot"),
    _c("domain-uppercase", {f"{NS}:domain": "Org1.Example.com"}, f"{NS}:domain", "lowercase", "'org1.example.com'"),
    _c("domain-trailing-dot", {f"{NS}:domain": "org1.example.com."}, f"{NS}:domain", "ends with a dot"),
    _c("domain-double-dot", {f"{NS}:domain": "org1..example.com"}, f"{NS}:domain", "empty part"),
    _c("domain-long-label", {f"{NS}:domain": "a" * 64 + ".example.com"}, f"{NS}:domain", "at most 63"),
    _c("domain-too-long", {f"{NS}:domain": ".".join(["a" * 60] * 5) + ".com"}, f"{NS}:domain", "at most 253"),
    _c("domain-underscore", {f"{NS}:domain": "org_1.example.com"}, f"{NS}:domain", "'_'", "letters, digits and '-'"),
    _c("domain-ip", {f"{NS}:domain": "10.0.0.1"}, f"{NS}:domain", "ends in a number"),
    _c("domain-wildcard", {f"{NS}:domain": "*.example.com"}, f"{NS}:domain", "'*'"),
    _c("domain-missing", {f"{NS}:domain": REMOVE}, f"{NS}:domain", "is required",
       "pulumi config set artifact-slice:domain"),
    _c("domain-empty", {f"{NS}:domain": ""}, f"{NS}:domain", "is empty"),
    # prefix
    _c("prefix-stack-name-uppercase", {}, f"{NS}:prefix", "lowercase", stack="Org_1"),
    _c("prefix-too-long", {f"{NS}:prefix": "p" * 60}, f"{NS}:prefix", "60 characters", "2 to 48"),
    _c("prefix-one-char", {f"{NS}:prefix": "p"}, f"{NS}:prefix", "1 characters", "2 to 48"),
    _c("prefix-digit-first", {f"{NS}:prefix": "1org"}, f"{NS}:prefix", "starting with a letter"),
    _c("prefix-trailing-dash", {f"{NS}:prefix": "org-"}, f"{NS}:prefix", "not ending with a dash"),
    _c("prefix-double-dash", {f"{NS}:prefix": "org--1"}, f"{NS}:prefix", "single dashes"),
    _c("prefix-dot", {f"{NS}:prefix": "org.1"}, f"{NS}:prefix", "lowercase letters, digits"),
    # numbers and booleans
    _c("volume-words", {f"{NS}:nfsVolumeSizeGb": "lots"}, f"{NS}:nfsVolumeSizeGb", "whole number",
       "pulumi config set artifact-slice:nfsVolumeSizeGb 10"),
    _c("volume-zero", {f"{NS}:nfsVolumeSizeGb": "0"}, f"{NS}:nfsVolumeSizeGb", "too small", "1 GB"),
    _c("volume-huge", {f"{NS}:nfsVolumeSizeGb": "5000"}, f"{NS}:nfsVolumeSizeGb", "too large", "500 GB"),
    _c("volume-fraction", {f"{NS}:nfsVolumeSizeGb": "1.5"}, f"{NS}:nfsVolumeSizeGb", "whole number"),
    _c("volume-unit", {f"{NS}:nfsVolumeSizeGb": "10GB"}, f"{NS}:nfsVolumeSizeGb", "whole number", "digits only"),
    _c("volume-negative", {f"{NS}:nfsVolumeSizeGb": "-3"}, f"{NS}:nfsVolumeSizeGb", "too small"),
    _c("token-expiry-zero", {f"{NS}:tokenExpiryHours": "0"}, f"{NS}:tokenExpiryHours", "too small", "1 hours"),
    _c("token-expiry-huge", {f"{NS}:tokenExpiryHours": "1000000"}, f"{NS}:tokenExpiryHours", "too large", "87600"),
    _c("token-expiry-duration", {f"{NS}:tokenExpiryHours": "8760h"}, f"{NS}:tokenExpiryHours", "whole number"),
    _c("gate-timeout-small", {f"{NS}:nfsGateTimeoutSeconds": "1"}, f"{NS}:nfsGateTimeoutSeconds", "5 seconds"),
    _c("gate-timeout-huge", {f"{NS}:nfsGateTimeoutSeconds": "86400"}, f"{NS}:nfsGateTimeoutSeconds", "3600 seconds"),
    _c("gate-timeout-words", {f"{NS}:nfsGateTimeoutSeconds": "three minutes"}, "whole number"),
    _c("protect-volumes-maybe", {f"{NS}:protectVolumes": "maybe"}, f"{NS}:protectVolumes", "true or false",
       "pulumi config set artifact-slice:protectVolumes true"),
    _c("create-org-yesplease", {f"{NS}:createOrg": "yes please"}, f"{NS}:createOrg", "true or false"),
    _c("validate-in-up-2", {f"{NS}:validateInUp": "2"}, f"{NS}:validateInUp", "true or false"),
    # images
    _c("image-space", {f"{NS}:routerImage": "Router Image"}, f"{NS}:routerImage", "contains a space",
       "registry.fly.io/"),
    _c("image-uppercase-repo", {f"{NS}:nfsImage": "registry.fly.io/Artifact-NFS:1"}, f"{NS}:nfsImage",
       "capital letters", "lowercase"),
    _c("image-url", {f"{NS}:execImage": "https://registry.fly.io/artifact-fly-exec:1"}, f"{NS}:execImage",
       "is a URL", "without a scheme"),
    _c("image-docker-scheme", {f"{NS}:execImage": "docker://nginx:latest"}, f"{NS}:execImage", "is a URL"),
    _c("image-bad-tag", {f"{NS}:workerImage": "registry.fly.io/worker:v1!"}, f"{NS}:workerImage", "tag 'v1!'",
       "128 letters"),
    _c("image-tag-dash-first", {f"{NS}:workerImage": "registry.fly.io/worker:-1"}, f"{NS}:workerImage", "tag"),
    _c("image-bad-digest", {f"{NS}:basicImage": "registry.fly.io/basic@sha256:abc"}, f"{NS}:basicImage",
       "digest", "64 lowercase hex"),
    _c("image-md5-digest", {f"{NS}:basicImage": "registry.fly.io/basic@md5:" + "a" * 32}, f"{NS}:basicImage",
       "digest"),
    _c("image-empty", {f"{NS}:coderImage": ""}, f"{NS}:coderImage", "is empty"),
    _c("image-trailing-slash", {f"{NS}:coderImage": "registry.fly.io/"}, f"{NS}:coderImage", "empty repository"),
    _c("image-registry-port", {f"{NS}:coderImage": "registry.fly.io:99999/coder:1"}, f"{NS}:coderImage",
       "registry port"),
    _c("image-bad-registry", {f"{NS}:coderImage": "-registry.fly.io/coder:1"}, f"{NS}:coderImage", "registry"),
    _c("image-double-dot", {f"{NS}:coderImage": "registry.fly.io/coder..x:1"}, f"{NS}:coderImage",
       "repository part"),
    # unknown keys and namespaces
    _c("key-typo", {f"{NS}:nfsVolumeSize": "3"}, f"{NS}:nfsVolumeSize", "not a known setting",
       f"did you mean {NS}:nfsVolumeSizeGb"),
    _c("key-case", {f"{NS}:primaryregion": "syd"}, "did you mean artifact-slice:primaryRegion",
       "`pulumi config rm artifact-slice:primaryregion` then `pulumi config set artifact-slice:primaryRegion <value>`"),
    _c("key-snake-case", {f"{NS}:primary_region": "syd"}, "did you mean artifact-slice:primaryRegion"),
    _c("key-unrelated", {f"{NS}:colour": "blue"}, f"{NS}:colour", "not a known setting",
       "pulumi config rm artifact-slice:colour"),
    _c("namespace-typo", {"artifact_slice:org": "personal"}, "artifact_slice:org", "did you mean artifact-slice:org"),
    _c("fly-key-typo", {"fly:apiBaseUrll": "https://api.machines.dev"}, "fly:apiBaseUrll",
       "did you mean fly:apiBaseUrl"),
    _c("fly-key-flaps-typo", {"fly:flapsUrl": "https://api.machines.dev"}, "did you mean fly:flapsBaseUrl"),
    _c("fly-key-token-typo", {"fly:apitoken": "x"}, "did you mean fly:apiToken",
       "`pulumi config set --secret fly:apiToken <value>`", secret=("fly:apitoken",)),
    _c("fly-key-in-project-namespace", {f"{NS}:apiBaseUrl": "https://api.machines.dev"},
       "did you mean fly:apiBaseUrl"),
    _c("fly-namespace-typo", {"fyl:apiToken": "x"}, "fyl:apiToken", "did you mean fly:apiToken",
       secret=("fyl:apiToken",)),
    # URLs
    _c("url-space", {"fly:apiBaseUrl": "https://api machines.dev"}, "fly:apiBaseUrl", "contains a space"),
    _c("url-no-scheme", {"fly:flapsBaseUrl": "api.machines.dev"}, "fly:flapsBaseUrl", "no http:// or https://",
       "https://api.machines.dev"),
    _c("url-ftp", {"fly:apiBaseUrl": "ftp://api.machines.dev"}, "fly:apiBaseUrl", "starts with ftp://"),
    _c("url-bad-port", {"fly:apiBaseUrl": "https://api.machines.dev:99999"}, "fly:apiBaseUrl", "port"),
    _c("url-no-host", {"fly:apiBaseUrl": "https://"}, "fly:apiBaseUrl", "no host name"),
    _c("url-dash-host", {"fly:apiBaseUrl": "https://-api.machines.dev"}, "fly:apiBaseUrl",
       "starts or ends with '-'"),
    _c("url-credentials", {"fly:apiBaseUrl": "https://user:hunter2@api.machines.dev"}, "fly:apiBaseUrl",
       "credentials", "fly:apiToken", hidden="hunter2"),
    _c("url-query", {"fly:flapsBaseUrl": "https://api.machines.dev/?debug=1"}, "fly:flapsBaseUrl", "query"),
    _c("url-long-label", {"fly:apiBaseUrl": f"https://{'a' * 64}.dev"}, "fly:apiBaseUrl", "at most 63"),
    # secrets in plain text
    _c("clerk-secret-plain", {f"{NS}:clerkSecretKey": "sk_" "live_0123456789abcdefghij"}, f"{NS}:clerkSecretKey",
       "plain text", f"pulumi config set --secret {NS}:clerkSecretKey", hidden="sk_" "live_0123456789abcdefghij"),
    _c("fly-token-plain", {"fly:apiToken": "FlyV1 fm" "2_lJPECAAAAAAAAAAAAAAAAAAAAAA"}, "fly:apiToken", "plain text",
       "pulumi config set --secret fly:apiToken", hidden="fm" "2_lJPECAAAAAAAAAAAAAAAAAAAAAA"),
    _c("fly-token-plain-short", {"fly:apiToken": "abc"}, "fly:apiToken", "pulumi config set --secret fly:apiToken"),
    _c("secret-in-unknown-key", {f"{NS}:clerkKey": "sk_" "test_abcdefghijklmnop1234"}, f"{NS}:clerkKey",
       "looks like a credential", "--secret", hidden="sk_" "test_abcdefghijklmnop1234"),
    _c("token-in-domain", {f"{NS}:domain": "FlyV1 fm" "2_lJPECAAAAAAAAAAAAAAAAAAAAAA"}, f"{NS}:domain",
       "looks like a credential", hidden="fm" "2_lJPECAAAAAAAAAAAAAAAAAAAAAA"),
    _c("clerk-keys-swapped", {f"{NS}:clerkSecretKey": "pk_live_abcdefghijklmnop", f"{NS}:clerkPublishableKey":
                              "sk_" "live_abcdefghijklmnop1234"}, "are the two swapped",
       f"pulumi config set --secret {NS}:clerkSecretKey",
       secret=(f"{NS}:clerkSecretKey", f"{NS}:clerkPublishableKey"), hidden="sk_" "live_abcdefghijklmnop1234"),
    _c("clerk-secret-not-a-key", {f"{NS}:clerkSecretKey": "changeme"}, f"{NS}:clerkSecretKey",
       "is not a Clerk secret key", secret=(f"{NS}:clerkSecretKey",), hidden="changeme"),
    _c("fly-token-trailing-newline", {"fly:apiToken": "FlyV1 fm" "2_abcdefghijklmnopqrstu\n"}, "fly:apiToken",
       "line break", "pulumi config set --secret fly:apiToken", secret=("fly:apiToken",), hidden="fm" "2_abcdefghij"),
    _c("fly-token-empty", {"fly:apiToken": ""}, "fly:apiToken", "is empty", secret=("fly:apiToken",)),
    _c("clerk-secret-empty", {f"{NS}:clerkSecretKey": " "}, f"{NS}:clerkSecretKey", "is empty",
       secret=(f"{NS}:clerkSecretKey",)),
    # several at once: all reported together
    _c("several", {f"{NS}:org": "Org 1", f"{NS}:primaryRegion": "sydney", f"{NS}:domain": "x"},
       f"{NS}:org", f"{NS}:primaryRegion", f"{NS}:domain"),
]
